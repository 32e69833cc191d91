// Typed reads of config.json fields. A JSON null counts as absent (DeepSeek writes
// "n_shared_experts": null); a present value of the wrong type is an InvalidConfig error that
// names the file and the field.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/family_table.h"

namespace moe {

std::optional<int64_t> config_int(const nlohmann::json& cfg, const char* field,
                                  const std::string& path);
std::optional<double> config_number(const nlohmann::json& cfg, const char* field,
                                    const std::string& path);
std::optional<bool> config_bool(const nlohmann::json& cfg, const char* field,
                                const std::string& path);
std::optional<std::string> config_string(const nlohmann::json& cfg, const char* field,
                                         const std::string& path);
std::optional<std::vector<int>> config_int_list(const nlohmann::json& cfg, const char* field,
                                                const std::string& path);

// The first present spelling; nullopt when none is present.
std::optional<int64_t> config_int_any(const nlohmann::json& cfg, const Spellings& names,
                                      const std::string& path);
// As config_int_any, but absent -> InvalidConfig "missing field a (or b, c)"; the value must be
// in [min_value, INT32_MAX].
int config_required_int(const nlohmann::json& cfg, const Spellings& names, int min_value,
                        const std::string& path);
std::string spellings_str(const Spellings& names);  // "num_experts (or num_local_experts)"

}  // namespace moe
