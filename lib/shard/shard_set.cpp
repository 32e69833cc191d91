#include "shard/shard_set.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "io/checkpoint.h"
#include "mapping/expert_mapping.h"
#include "plan/plan.h"
#include "shard/manifest.h"
#include "shard/rank_builder.h"
#include "shard/xxhash64.h"

namespace moe {

struct ShardSet::Storage {
  std::vector<std::unique_ptr<SafetensorsFile>> files;  // open(): the mapped rank files
  std::vector<std::vector<uint8_t>> buffers;            // from_checkpoint(): built tensors
};

namespace {

// Rank-file tensor name (after "layers.{L}.") -> RankLayer member: one table for both builders.
struct ViewSlot {
  const char* name;
  TensorView RankLayer::*member;
};
constexpr ViewSlot kViewSlots[] = {
    {"w13_weight", &RankLayer::w13},
    {"w2_weight", &RankLayer::w2},
    {"w13_bias", &RankLayer::w13_bias},
    {"w2_bias", &RankLayer::w2_bias},
    {"router_weight", &RankLayer::router_weight},
    {"router_bias", &RankLayer::router_bias},
    {"e_score_correction_bias", &RankLayer::correction_bias},
    {"shared_w13_weight", &RankLayer::shared_w13},
    {"shared_w2_weight", &RankLayer::shared_w2},
    {"shared_expert_gate", &RankLayer::shared_expert_gate},
};
struct MapSlot {
  const char* name;
  std::vector<int32_t> RankLayer::*member;
};
constexpr MapSlot kMapSlots[] = {
    {"expert_map", &RankLayer::expert_map},
    {"physical_to_logical", &RankLayer::physical_to_logical},
    {"local_to_physical", &RankLayer::local_to_physical},
};

std::vector<int32_t> decode_i32(const TensorView& t) {
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  if (!v.empty()) std::memcpy(v.data(), t.data, v.size() * 4);  // data may be unaligned
  return v;
}

// Places a named tensor into its slot; returns false when the name is not a RankLayer tensor.
bool place(RankLayer& rl, const std::string& short_name, const TensorView& view) {
  for (const auto& s : kViewSlots)
    if (short_name == s.name) {
      rl.*(s.member) = view;
      return true;
    }
  for (const auto& s : kMapSlots)
    if (short_name == s.name) {
      rl.*(s.member) = decode_i32(view);
      return true;
    }
  return false;
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MOE_CHECK(f.good(), Io, path, "", "cannot open manifest");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void check_shape(const TensorView& t, const Shape& want, const std::string& file,
                 const std::string& name) {
  MOE_CHECK(t.shape == want, InvalidShard, file, name,
            "shape " + shape_str(t.shape) + " differs from " + shape_str(want) +
                " the manifest implies");
}

// Checks one rank's tensors of a layer against the geometry.
void check_rank_layer(const RankLayer& rl, const ShardGeometry& g, const ModelProfile& p,
                      const std::string& file, int layer) {
  auto name = [&](const char* n) { return shard_tensor_name(layer, n); };
  const int64_t El = static_cast<int64_t>(rl.local_to_physical.size());
  const int64_t Ir = g.intermediate_per_rank_padded, Hp = g.hidden_size_padded;
  MOE_CHECK(rl.w13.data && rl.w2.data && rl.router_weight.data, InvalidShard, file,
            name("w13_weight"), "w13_weight, w2_weight or router_weight missing");
  check_shape(rl.w13, {El, 2 * Ir, Hp}, file, name("w13_weight"));
  check_shape(rl.w2, {El, Hp, Ir}, file, name("w2_weight"));
  check_shape(rl.router_weight, {p.num_experts, g.hidden_size}, file, name("router_weight"));
  MOE_CHECK(static_cast<int>(rl.expert_map.size()) == g.num_physical_experts &&
                static_cast<int>(rl.physical_to_logical.size()) == g.num_physical_experts,
            InvalidShard, file, name("expert_map"), "expert maps do not hold num_physical_experts entries");
  for (int64_t i = 0; i < El; ++i) {
    const int32_t ph = rl.local_to_physical[i];
    MOE_CHECK(ph >= 0 && ph < g.num_physical_experts && rl.expert_map[ph] == i, InvalidShard, file,
              name("local_to_physical"), "local_to_physical and expert_map disagree");
  }
  for (int32_t l : rl.physical_to_logical)
    MOE_CHECK(l >= 0 && l < p.num_experts, InvalidShard, file, name("physical_to_logical"),
              "a logical id is out of range");
  if (rl.w13_bias.data) check_shape(rl.w13_bias, {El, 2 * Ir}, file, name("w13_bias"));
  if (rl.w2_bias.data) check_shape(rl.w2_bias, {El, Hp}, file, name("w2_bias"));
  if (rl.router_bias.data) check_shape(rl.router_bias, {p.num_experts}, file, name("router_bias"));
  if (rl.correction_bias.data)
    check_shape(rl.correction_bias, {p.num_experts}, file, name("e_score_correction_bias"));
  const int64_t Is = g.shared_per_rank_padded;
  if (rl.shared_w13.data) check_shape(rl.shared_w13, {2 * Is, Hp}, file, name("shared_w13_weight"));
  if (rl.shared_w2.data) check_shape(rl.shared_w2, {Hp, Is}, file, name("shared_w2_weight"));
  if (rl.shared_expert_gate.data)
    check_shape(rl.shared_expert_gate, {1, g.hidden_size}, file, name("shared_expert_gate"));
}

}  // namespace

ShardSet ShardSet::open(const std::string& dir, bool verify_checksums) {
  const std::string mpath = dir + "/" + kManifestName;
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(read_text_file(mpath));
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::InvalidShard, mpath, "", std::string("manifest is not valid JSON: ") + e.what());
  }
  ShardSet set;
  set.geometry_ = geometry_from_manifest(m, mpath);
  set.ranks_ = ranks_from_manifest(m, mpath);
  MOE_CHECK(m.contains("profile"), InvalidShard, mpath, "", "manifest has no \"profile\"");
  try {
    set.profile_ = profile_from_json(m["profile"]);
  } catch (const Error& e) {
    fail(ErrorCode::InvalidShard, mpath, "", std::string("manifest \"profile\": ") + e.detail());
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::InvalidShard, mpath, "", std::string("manifest \"profile\": ") + e.what());
  }
  // The set's profile lists the MoE layers this set holds (a --layers subset of the model's).
  set.profile_.moe_layers = layers_from_manifest(m, mpath);
  if (m.contains("source") && m["source"].is_object() && m["source"].value("path", nlohmann::json()).is_string())
    set.source_path_ = m["source"]["path"].get<std::string>();
  set.storage_ = std::make_shared<Storage>();

  for (const RankInfo& r : set.ranks_) {
    const std::string path = dir + "/" + r.file;
    const auto& entry = m["ranks"][r.rank];
    if (verify_checksums) {
      const std::string want = entry.value("xxh64", "");
      const std::string got = xxh64_hex(xxh64_file(path));
      MOE_CHECK(got == want, ChecksumMismatch, path, "",
                "xxh64 " + got + " differs from the manifest's " + want);
    }
    auto file = std::make_unique<SafetensorsFile>(path);
    const auto& meta = file->header().metadata;
    auto meta_is = [&](const char* k, const std::string& v) {
      auto it = meta.find(k);
      return it != meta.end() && it->second == v;
    };
    MOE_CHECK(meta_is("format", kShardFileFormat) && meta_is("rank", std::to_string(r.rank)) &&
                  meta_is("tp_rank", std::to_string(r.tp_rank)) &&
                  meta_is("ep_rank", std::to_string(r.ep_rank)),
              InvalidShard, path, "", "__metadata__ does not match the manifest's rank entry");
    for (int layer : set.profile_.moe_layers) {
      RankLayer rl;
      const std::string prefix = shard_tensor_name(layer, "");
      for (const auto& t : file->header().tensors) {
        if (t.name.compare(0, prefix.size(), prefix) != 0) continue;
        const std::string short_name = t.name.substr(prefix.size());
        const TensorView v = file->view(t.name);
        const bool is_map = short_name == "expert_map" || short_name == "physical_to_logical" ||
                            short_name == "local_to_physical";
        MOE_CHECK(!is_map || (v.dtype == DType::I32 && v.shape.size() == 1), InvalidShard, path,
                  t.name, "expert maps must be 1-D I32");
        place(rl, short_name, v);
      }
      check_rank_layer(rl, set.geometry_, set.profile_, path, layer);
      set.layers_[{r.rank, layer}] = std::move(rl);
    }
    set.storage_->files.push_back(std::move(file));
  }
  set.manifest_ = std::move(m);
  return set;
}

ShardSet ShardSet::from_checkpoint(const std::string& ckpt_path) {
  Checkpoint ckpt = Checkpoint::open(ckpt_path);
  const std::string config_path = ckpt.root() + "/config.json";
  MOE_CHECK(ckpt.has_config(), InvalidConfig, config_path, "", "no config.json beside the checkpoint");
  ShardSet set;
  set.profile_ = profile_from_config(ckpt.config(), config_path);
  check_convertible(set.profile_, config_path);
  const Plan plan = plan_placement(set.profile_, PlanOptions{});
  const ExpertMapping mapping(ckpt, set.profile_);
  set.storage_ = std::make_shared<Storage>();
  set.source_path_ = ckpt_path;
  set.ranks_ = {RankInfo{0, 0, 0, ""}};
  set.geometry_.num_physical_experts = plan.num_physical_experts;
  set.geometry_.hidden_size = static_cast<int>(plan.hidden_size);
  set.geometry_.hidden_size_padded = static_cast<int>(plan.hidden_size_padded);
  set.geometry_.intermediate_per_rank = static_cast<int>(plan.intermediate.per_rank);
  set.geometry_.intermediate_per_rank_padded = static_cast<int>(plan.intermediate.per_rank_padded);
  set.geometry_.shared_per_rank = static_cast<int>(plan.shared.per_rank);
  set.geometry_.shared_per_rank_padded = static_cast<int>(plan.shared.per_rank_padded);
  // The same builder as convert writes with; here each tensor is filled whole, in memory.
  for (int layer : plan.moe_layers) {
    RankLayer rl;
    const std::string prefix = shard_tensor_name(layer, "");
    for (const TensorBuild& tb : build_rank_layer(mapping, set.profile_, plan, 0, layer)) {
      auto& buf = set.storage_->buffers.emplace_back(tb.nbytes());
      tb.fill(0, tb.num_rows(), buf.data());
      TensorView v{buf.data(), tb.dtype(), tb.shape(), tb.nbytes()};
      MOE_ASSERT(place(rl, tb.name().substr(prefix.size()), v));
    }
    set.layers_[{0, layer}] = std::move(rl);
  }
  set.manifest_ = manifest_from_plan(plan, set.profile_);
  set.manifest_["source"] = {{"path", ckpt_path}};
  return set;
}

const RankLayer& ShardSet::layer(int rank, int moe_layer) const {
  auto it = layers_.find({rank, moe_layer});
  MOE_CHECK(it != layers_.end(), InvalidShard, "", "",
            "rank " + std::to_string(rank) + " holds no MoE layer " + std::to_string(moe_layer));
  return it->second;
}

}  // namespace moe
