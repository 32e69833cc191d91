#include "model/inspect.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "core/error.h"
#include "mapping/expert_mapping.h"
#include "model/profile.h"

namespace moe {

std::string layer_list_str(const std::vector<int>& layers) {
  std::string s;
  for (size_t i = 0; i < layers.size();) {
    size_t j = i;
    while (j + 1 < layers.size() && layers[j + 1] == layers[j] + 1) ++j;
    if (!s.empty()) s += ",";
    s += std::to_string(layers[i]);
    if (j > i) s += "-" + std::to_string(layers[j]);
    i = j + 1;
  }
  return s.empty() ? "none" : s;
}

nlohmann::json inspect_checkpoint(const Checkpoint& ck) {
  const std::string cfg_path = ck.root() + "/config.json";
  MOE_CHECK(ck.has_config(), InvalidConfig, cfg_path, "",
            "config.json not found: inspect needs it to know the model");
  const ModelProfile p = profile_from_config(ck.config(), cfg_path);
  nlohmann::json j = profile_to_json(p);
  j["path"] = ck.root();

  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : ck.files())
    files.push_back({{"name", std::filesystem::path(f->path()).filename().string()},
                     {"bytes", f->mapped().size()},
                     {"tensors", f->header().tensors.size()}});
  j["files"] = files;
  j["total_bytes"] = ck.total_tensor_bytes();

  // Per MoE layer: everything under its block (router, experts, scales, shared), by prefix.
  const ExpertMapping m(ck, p);
  const std::vector<std::string> names = ck.names();
  std::map<std::string, uint64_t> moe_dtypes;
  uint64_t moe_bytes = 0;
  nlohmann::json layers = nlohmann::json::array();
  for (int L : p.moe_layers) {
    const std::string block = m.name("{B}.", L);
    uint64_t bytes = 0;
    int tensors = 0;
    std::set<std::string> dtypes;
    for (auto it = std::lower_bound(names.begin(), names.end(), block);
         it != names.end() && it->compare(0, block.size(), block) == 0; ++it) {
      TensorView v = ck.view(*it);
      bytes += v.nbytes;
      ++tensors;
      dtypes.insert(dtype_name(v.dtype));
      moe_dtypes[dtype_name(v.dtype)] += v.nbytes;
    }
    moe_bytes += bytes;
    layers.push_back({{"layer", L}, {"tensors", tensors}, {"bytes", bytes},
                      {"dtypes", std::vector<std::string>(dtypes.begin(), dtypes.end())}});
  }
  j["layers"] = layers;
  j["moe_bytes"] = moe_bytes;
  j["moe_dtypes"] = moe_dtypes;
  return j;
}

}  // namespace moe
