#include "reference/diff.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <utility>

#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "io/checkpoint.h"
#include "mapping/expert_mapping.h"
#include "reference/checkpoint_weights.h"
#include "reference/moe_reference.h"
#include "reference/run_report.h"
#include "reference/scratch_pool.h"
#include "reference/shard_weights.h"
#include "shard/shard_set.h"

namespace moe {

namespace {

// The fields that make two profiles the same MoE model, as (name, getter) rows.
struct ProfileField {
  const char* name;
  std::function<std::string(const ModelProfile&)> get;
};
const std::vector<ProfileField>& profile_fields() {
  auto num = [](auto v) { return std::to_string(v); };
  static const std::vector<ProfileField> fields = {
      {"family", [](const ModelProfile& p) { return std::string(family_name(p.family)); }},
      {"num_experts", [=](const ModelProfile& p) { return num(p.num_experts); }},
      {"top_k", [=](const ModelProfile& p) { return num(p.top_k); }},
      {"hidden_size", [=](const ModelProfile& p) { return num(p.hidden_size); }},
      {"moe_intermediate_size", [=](const ModelProfile& p) { return num(p.moe_intermediate_size); }},
      {"shared_intermediate_size",
       [=](const ModelProfile& p) { return num(p.shared_intermediate_size); }},
      {"has_shared_expert_gate", [=](const ModelProfile& p) { return num(p.has_shared_expert_gate); }},
      {"has_expert_bias", [=](const ModelProfile& p) { return num(p.has_expert_bias); }},
      {"activation", [](const ModelProfile& p) { return std::string(activation_name(p.activation)); }},
      {"swiglu_alpha", [=](const ModelProfile& p) { return num(p.swiglu_alpha); }},
      {"swiglu_limit", [=](const ModelProfile& p) { return num(p.swiglu_limit); }},
      {"routing.score", [=](const ModelProfile& p) { return num(static_cast<int>(p.routing.score)); }},
      {"routing.renormalize", [=](const ModelProfile& p) { return num(p.routing.renormalize); }},
      {"routing.renorm_min", [=](const ModelProfile& p) { return num(p.routing.renorm_min); }},
      {"routing.routed_scaling_factor",
       [=](const ModelProfile& p) { return num(p.routing.routed_scaling_factor); }},
      {"routing.n_group", [=](const ModelProfile& p) { return num(p.routing.n_group); }},
      {"routing.topk_group", [=](const ModelProfile& p) { return num(p.routing.topk_group); }},
      {"routing.group_score",
       [=](const ModelProfile& p) { return num(static_cast<int>(p.routing.group_score)); }},
      {"routing.has_correction_bias",
       [=](const ModelProfile& p) { return num(p.routing.has_correction_bias); }},
      {"routing.has_router_bias", [=](const ModelProfile& p) { return num(p.routing.has_router_bias); }},
      {"routing.weight_on_input", [=](const ModelProfile& p) { return num(p.routing.weight_on_input); }},
  };
  return fields;
}

bool is_file(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

class CheckpointSource : public ModelSource {
 public:
  explicit CheckpointSource(const std::string& path) : ckpt_(Checkpoint::open(path)) {
    const std::string config_path = ckpt_.root() + "/config.json";
    MOE_CHECK(ckpt_.has_config(), InvalidConfig, config_path, "", "no config.json beside the checkpoint");
    profile_ = profile_from_config(ckpt_.config(), config_path);
    mapping_ = std::make_unique<ExpertMapping>(ckpt_, profile_);
  }
  const ModelProfile& profile() const override { return profile_; }
  std::unique_ptr<LayerWeights> layer(int l) const override {
    return std::make_unique<CheckpointLayerWeights>(ckpt_, *mapping_, l);
  }
  std::string kind() const override { return "checkpoint"; }

 private:
  Checkpoint ckpt_;
  ModelProfile profile_;
  std::unique_ptr<ExpertMapping> mapping_;  // refers to ckpt_ and profile_
};

class ShardSource : public ModelSource {
 public:
  explicit ShardSource(const std::string& dir) : set_(ShardSet::open(dir)) {}
  const ModelProfile& profile() const override { return set_.profile(); }
  std::unique_ptr<LayerWeights> layer(int l) const override {
    return std::make_unique<ShardLayerWeights>(set_, l);
  }
  std::string kind() const override { return "shards"; }

 private:
  ShardSet set_;
};

// Compares optional tensors: both absent is nothing to report, one absent is a model mismatch.
template <typename T, typename Fn>
void compare_optional(const std::optional<T>& a, const std::optional<T>& b, const char* what,
                      int layer, Fn&& add) {
  MOE_CHECK(a.has_value() == b.has_value(), InvalidArgument, "", what,
            "layer " + std::to_string(layer) + ": present on one side only");
  if (a) add(*a, *b);
}

ErrorMetrics compare_values(const float* b, const float* a, size_t n_b, size_t n_a,
                            const std::string& what, int layer) {
  MOE_CHECK(n_a == n_b, ShapeMismatch, "", what,
            "layer " + std::to_string(layer) + ": " + std::to_string(n_a) + " vs " +
                std::to_string(n_b) + " elements");
  ErrorAccumulator acc;
  acc.add(b, a, static_cast<int64_t>(n_a));
  return acc.result();
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

std::string model_difference(const ModelProfile& a, const ModelProfile& b) {
  for (const ProfileField& f : profile_fields()) {
    std::string va = f.get(a), vb = f.get(b);
    if (va != vb) return std::string(f.name) + " " + va + " vs " + vb;
  }
  return "";
}

std::unique_ptr<ModelSource> ModelSource::open(const std::string& path) {
  if (is_file(path + "/manifest.json")) return std::make_unique<ShardSource>(path);
  return std::make_unique<CheckpointSource>(path);
}

DiffReport diff_models(const std::string& a_path, const std::string& b_path,
                       const DiffOptions& o) {
  const auto a = ModelSource::open(a_path);
  const auto b = ModelSource::open(b_path);
  const std::string mismatch = model_difference(a->profile(), b->profile());
  MOE_CHECK(mismatch.empty(), InvalidArgument, b_path, "",
            "not the same model as " + a_path + ": " + mismatch);
  std::vector<int> layers;
  for (int l : a->profile().moe_layers)
    if (std::count(b->profile().moe_layers.begin(), b->profile().moe_layers.end(), l))
      layers.push_back(l);
  MOE_CHECK(!layers.empty(), InvalidArgument, b_path, "", "shares no MoE layer with " + a_path);
  MOE_CHECK(o.tokens >= 1, InvalidArgument, "", "", "--tokens must be at least 1");

  const ModelProfile& p = a->profile();
  const int threads = o.threads > 0 ? o.threads : default_threads();
  DiffReport report{a_path, b_path, a->kind(), b->kind(), {}};
  uint64_t expert_bytes = a->layer(layers.front())->expert_bytes() +
                          b->layer(layers.front())->expert_bytes();
  Progress progress("diff", expert_bytes * p.num_experts * layers.size(), o.quiet);
  // Decode buffers per worker, reused across experts and layers: fresh pages for full-size
  // experts cost more than decoding them (see scratch_pool.h).
  ScratchPool<std::pair<DenseMatrix, DenseMatrix>> scratch;
  ScratchPool<MlpWeights> mlp_scratch;  // the same for --outputs' reference blocks

  for (int layer : layers) {
    LayerDiff d;
    d.layer = layer;
    const auto wa = a->layer(layer);
    const auto wb = b->layer(layer);
    auto add_matrix = [&](const char* what, const DenseMatrix& ma, const DenseMatrix& mb) {
      MOE_CHECK(ma.rows == mb.rows && ma.cols == mb.cols, ShapeMismatch, "", what,
                "layer " + std::to_string(layer) + ": shapes differ");
      d.weights.push_back({what, compare_values(mb.data.data(), ma.data.data(), mb.data.size(),
                                                ma.data.size(), what, layer)});
    };
    auto add_vector = [&](const char* what) {
      return [&, what](const FloatVec& va, const FloatVec& vb) {
        d.weights.push_back(
            {what, compare_values(vb.data(), va.data(), vb.size(), va.size(), what, layer)});
      };
    };
    add_matrix("router", wa->router_weight(), wb->router_weight());
    compare_optional(wa->router_bias(), wb->router_bias(), "router_bias", layer,
                     add_vector("router_bias"));
    compare_optional(wa->correction_bias(), wb->correction_bias(), "e_score_correction_bias",
                     layer, add_vector("e_score_correction_bias"));

    // Routed experts: one accumulator per (expert, projection), merged in expert order.
    const Proj projs[] = {Proj::Gate, Proj::Up, Proj::Down};
    const int E = p.num_experts;
    std::vector<ErrorAccumulator> acc(static_cast<size_t>(E) * 3), bias_acc(acc.size());
    std::vector<char> has_bias(acc.size(), 0);
    parallel_for(E, threads, [&](int64_t e) {
      auto lease = scratch.take();
      DenseMatrix& ma = lease->first;
      DenseMatrix& mb = lease->second;
      for (int j = 0; j < 3; ++j) {
        const std::string what = std::string(proj_name(projs[j]));
        wa->expert_into(static_cast<int>(e), projs[j], ma);
        wb->expert_into(static_cast<int>(e), projs[j], mb);
        MOE_CHECK(ma.rows == mb.rows && ma.cols == mb.cols, ShapeMismatch, "", what,
                  "layer " + std::to_string(layer) + " expert " + std::to_string(e) +
                      ": shapes differ");
        acc[e * 3 + j].add(mb.data.data(), ma.data.data(), static_cast<int64_t>(ma.data.size()));
        auto ba = wa->expert_bias(static_cast<int>(e), projs[j]);
        auto bb = wb->expert_bias(static_cast<int>(e), projs[j]);
        MOE_CHECK(ba.has_value() == bb.has_value() && (!ba || ba->size() == bb->size()),
                  InvalidArgument, "", what + " bias",
                  "layer " + std::to_string(layer) + ": differs in presence or size");
        if (ba) {
          has_bias[e * 3 + j] = 1;
          bias_acc[e * 3 + j].add(bb->data(), ba->data(), static_cast<int64_t>(ba->size()));
        }
      }
      progress.add(expert_bytes);
    });
    for (int j = 0; j < 3; ++j) {
      ErrorAccumulator total, bias_total;
      for (int e = 0; e < E; ++e) {
        total.merge(acc[e * 3 + j]);
        bias_total.merge(bias_acc[e * 3 + j]);
      }
      d.weights.push_back({proj_name(projs[j]), total.result()});
      if (has_bias[j]) d.weights.push_back({std::string(proj_name(projs[j])) + "_bias",
                                            bias_total.result()});
    }
    for (Proj pr : projs) {
      const std::string what = std::string("shared_") + proj_name(pr);
      compare_optional(wa->shared(pr), wb->shared(pr), what.c_str(), layer,
                       [&](const DenseMatrix& ma, const DenseMatrix& mb) {
                         add_matrix(what.c_str(), ma, mb);
                       });
    }
    compare_optional(wa->shared_expert_gate(), wb->shared_expert_gate(), "shared_expert_gate",
                     layer, add_vector("shared_expert_gate"));

    if (o.outputs) {
      const std::vector<float> x = random_hidden_states(o.tokens, p.hidden_size, o.seed, layer);
      const ReferenceOptions ro{Precision::F64, threads, nullptr, &mlp_scratch};
      const BlockOutput oa = reference_block(p, *wa, x.data(), o.tokens, ro);
      const BlockOutput ob = reference_block(b->profile(), *wb, x.data(), o.tokens, ro);
      ErrorAccumulator out;
      out.add(ob.out.data(), oa.out.data(), static_cast<int64_t>(oa.out.size()));
      d.output = out.result();
      d.routing_agreement =
          routing_agreement(oa.routing.ids.data(), ob.routing.ids.data(), o.tokens, p.top_k);
    }
    report.layers.push_back(std::move(d));
  }
  progress.finish();
  return report;
}

nlohmann::json DiffReport::to_json() const {
  nlohmann::json j = {{"a", a}, {"b", b}, {"a_kind", a_kind}, {"b_kind", b_kind},
                      {"layers", nlohmann::json::array()}};
  for (const LayerDiff& d : layers) {
    nlohmann::json l = {{"layer", d.layer}, {"weights", nlohmann::json::object()}};
    for (const TensorDiff& t : d.weights) l["weights"][t.what] = metrics_to_json(t.metrics);
    if (d.output) {
      l["output"] = metrics_to_json(*d.output);
      l["routing_agreement"] = *d.routing_agreement;
    }
    j["layers"].push_back(l);
  }
  return j;
}

std::string DiffReport::table() const {
  std::string s = "diff: B = " + b + " (" + b_kind + ") against A = " + a + " (" + a_kind + ")\n";
  char line[256];
  std::snprintf(line, sizeof line, "%5s  %-24s %10s %10s %12s\n", "layer", "tensor", "max_abs",
                "rel_l2", "cosine");
  s += line;
  auto row = [&](int layer, const std::string& what, const ErrorMetrics& m, const std::string& tail) {
    std::snprintf(line, sizeof line, "%5d  %-24s %10s %10s %12s", layer, what.c_str(),
                  fmt("%.3e", m.max_abs).c_str(), fmt("%.3e", m.rel_l2).c_str(),
                  fmt("%.8f", m.cosine).c_str());
    s += line + tail + "\n";
  };
  for (const LayerDiff& d : layers) {
    for (const TensorDiff& t : d.weights) row(d.layer, t.what, t.metrics, "");
    if (d.output)
      row(d.layer, "output (reference)", *d.output,
          "  routing agreement " + fmt("%.1f", 100.0 * *d.routing_agreement) + "%");
  }
  return s;
}

}  // namespace moe
