// Recognizes config.json's quantization_config (formats.md sections 2-7) as a QuantInfo with a
// readable name, through one table of quant_method strings. Unknown methods are rejected with
// UnsupportedQuantization "unsupported quantization X".
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "model/profile.h"

namespace moe {

// `qc` is the quantization_config object (absent/null -> method None, name "none").
QuantInfo quant_info_from_config(const nlohmann::json& qc, const std::string& path);

const char* quant_method_name(QuantMethod m);  // the quant_method string, "none" for None
std::optional<QuantMethod> quant_method_from_name(std::string_view name);

}  // namespace moe
