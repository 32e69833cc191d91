// What a checkpoint holds, for `moe-tool inspect`: the profile (family, MoE layers, experts,
// top-k, sizes, shared experts, routing, activation, quantization) plus what the files say
// (dtypes and bytes per MoE layer, files, totals). Reads headers only, never tensor data.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/checkpoint.h"

namespace moe {

// profile_to_json's fields plus "path", "files" [{name, bytes, tensors}], "total_bytes",
// "moe_bytes", "moe_dtypes" {dtype: bytes}, "layers" [{layer, tensors, bytes, dtypes}].
// Throws InvalidConfig when there is no config.json.
nlohmann::json inspect_checkpoint(const Checkpoint& ckpt);

// "0-3,5,7-9"
std::string layer_list_str(const std::vector<int>& layers);

}  // namespace moe
