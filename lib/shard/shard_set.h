// Reading a shard set (docs/shard-format.md): the manifest, the profile, and per rank and MoE
// layer the tensors a runtime needs, as views into the mapped rank files. Also builds the same
// structure in memory straight from a checkpoint (one rank, TP=EP=1), so `run CKPT` uses the
// identical runtime code path as `run SHARDS`.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor_view.h"
#include "io/safetensors.h"
#include "model/profile.h"

namespace moe {

// One rank's tensors of one MoE layer. Optional tensors have data == nullptr.
struct RankLayer {
  TensorView w13, w2;                // [E_local, 2*I_r, H_p], [E_local, H_p, I_r]
  TensorView w13_bias, w2_bias;      // [E_local, 2*I_r], [E_local, H_p]
  TensorView router_weight;          // [E, H]
  TensorView router_bias;            // [E]
  TensorView correction_bias;        // [E]
  TensorView shared_w13, shared_w2;  // [2*Is_r, H_p], [H_p, Is_r]
  TensorView shared_expert_gate;     // [1, H]
  std::vector<int32_t> expert_map;           // [E_p] physical -> local or -1
  std::vector<int32_t> physical_to_logical;  // [E_p]
  std::vector<int32_t> local_to_physical;    // [E_local]
};

struct RankInfo {
  int rank = 0, tp_rank = 0, ep_rank = 0;
  std::string file;
};

struct ShardGeometry {
  int tp = 1, ep = 1, world_size = 1;
  int num_physical_experts = 0;
  int hidden_size = 0, hidden_size_padded = 0;
  int intermediate_per_rank = 0, intermediate_per_rank_padded = 0;
  int shared_per_rank = 0, shared_per_rank_padded = 0;
  bool w13_up_first = false;  // manifest w13_order == "up-gate"
};

class ShardSet {
 public:
  // A directory with manifest.json. Throws InvalidShard / Io / ChecksumMismatch (when verify).
  static ShardSet open(const std::string& dir, bool verify_checksums = false);
  // A checkpoint planned in memory as a single rank (TP=EP=1, no redundancy, no padding).
  static ShardSet from_checkpoint(const std::string& ckpt_path);

  const ModelProfile& profile() const { return profile_; }
  const ShardGeometry& geometry() const { return geometry_; }
  const nlohmann::json& manifest() const { return manifest_; }
  const std::vector<RankInfo>& ranks() const { return ranks_; }
  const std::string& source_path() const { return source_path_; }  // the checkpoint for the reference
  const RankLayer& layer(int rank, int moe_layer) const;  // throws InvalidShard if absent

  // Implementation detail shared with the builders in lib/shard/.
  struct Storage;

 private:
  ModelProfile profile_;
  ShardGeometry geometry_;
  nlohmann::json manifest_;
  std::vector<RankInfo> ranks_;
  std::string source_path_;
  std::map<std::pair<int, int>, RankLayer> layers_;
  std::shared_ptr<Storage> storage_;  // mapped files or in-memory buffers the views point into
};

}  // namespace moe
