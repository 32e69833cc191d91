#include "model/validate.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "mapping/expert_mapping.h"

namespace moe {

namespace {

constexpr Proj kProjs[] = {Proj::Gate, Proj::Up, Proj::Down};

// How far expert weights can be checked for a quantization method: dense views with shapes
// (plain and block-FP8 checkpoints, whose `.weight` keeps [N, K]), or presence of the tensors
// only (packed formats: their shapes belong to lib/quant's decoders).
struct QuantCheckRow {
  QuantMethod method;
  bool dense_shapes;
  bool block_scales;  // DeepSeek `weight_scale_inv` [ceil(N/bn), ceil(K/bk)] beside each weight
};
constexpr QuantCheckRow kQuantChecks[] = {
    {QuantMethod::None, true, false},          {QuantMethod::CompressedTensors, false, false},
    {QuantMethod::Fp8Block, true, true},       {QuantMethod::ModelOpt, false, false},
    {QuantMethod::Mxfp4, false, false},        {QuantMethod::BitsAndBytes, false, false},
    {QuantMethod::Gptq, false, false},         {QuantMethod::Awq, false, false},
};
static_assert(sizeof(kQuantChecks) / sizeof(kQuantChecks[0]) == static_cast<size_t>(QuantMethod::kCount));

class Validator {
 public:
  Validator(const Checkpoint& ck, ValidateReport& r)
      : ck_(ck), r_(r), p_(r.profile), m_(ck, r.profile), layout_(family_layout(r.profile.family)),
        names_(ck.names()), quant_(kQuantChecks[static_cast<size_t>(r.profile.quant.method)]) {}

  void run() {
    check_config();
    for (int L : p_.moe_layers)
      if (L >= 0 && L < p_.num_layers) check_layer(L);
    check_dense_layers();
    if (!quant_.dense_shapes)
      r_.notes.push_back(std::string("quantized expert weights (") + p_.quant.name +
                         "): presence checked, shapes are not");
  }

  void problem(int layer, const std::string& tensor, const std::string& text) {
    if (!seen_.insert(tensor + "\n" + text).second) return;  // fused tensors repeat per expert
    r_.problems.push_back({layer, tensor, text});
  }

 private:
  static std::string error_text(const Error& e) {
    return e.detail() + " [" + error_code_name(e.code()) + "]";
  }

  // Runs a lookup; a moe::Error becomes a problem of `layer`. Returns false on error.
  template <typename F>
  bool attempt(int layer, F&& f) {
    try {
      f();
      return true;
    } catch (const Error& e) {
      problem(layer, e.tensor(), error_text(e));
      return false;
    }
  }

  bool any_with_prefix(const std::string& prefix) const {
    auto it = std::lower_bound(names_.begin(), names_.end(), prefix);
    return it != names_.end() && it->compare(0, prefix.size(), prefix) == 0;
  }

  // "…experts.3.gate_proj.weight" -> "…experts.3.gate_proj." (quantized suffixes follow the stem).
  static std::string stem(const std::string& name) {
    const std::string w = "weight";
    return name.size() > w.size() && name.compare(name.size() - w.size(), w.size(), w) == 0
               ? name.substr(0, name.size() - w.size())
               : name;
  }

  void check_config() {
    const int E = p_.num_experts;
    const std::string cfg = "config.json";
    if (p_.moe_layers.empty()) problem(-1, "", cfg + " describes no MoE layer");
    for (int L : p_.moe_layers)
      if (L < 0 || L >= p_.num_layers)
        problem(-1, "", cfg + ": MoE layer " + std::to_string(L) + " is outside the " +
                            std::to_string(p_.num_layers) + " layers (num_hidden_layers)");
    if (p_.top_k > E)
      problem(-1, "", cfg + ": top_k " + std::to_string(p_.top_k) + " exceeds the " +
                          std::to_string(E) + " experts");
    const RoutingSpec& rt = p_.routing;
    if (rt.n_group > 1) {
      if (E % rt.n_group != 0)
        problem(-1, "", cfg + ": n_group " + std::to_string(rt.n_group) + " does not divide the " +
                            std::to_string(E) + " experts");
      else if (p_.top_k > rt.topk_group * (E / rt.n_group))
        problem(-1, "", cfg + ": top_k " + std::to_string(p_.top_k) + " exceeds the experts of the " +
                            std::to_string(rt.topk_group) + " kept groups");
      if (rt.topk_group > rt.n_group)
        problem(-1, "", cfg + ": topk_group " + std::to_string(rt.topk_group) + " exceeds n_group " +
                            std::to_string(rt.n_group));
    }
    if (!(rt.routed_scaling_factor > 0))
      problem(-1, "", cfg + ": routed_scaling_factor must be positive");
    if (!(rt.renorm_min >= 0)) problem(-1, "", cfg + ": moe_norm_min must be >= 0");
  }

  const char* tmpl_of(Proj p) const {
    return p == Proj::Gate ? layout_.gate : p == Proj::Up ? layout_.up : layout_.down;
  }
  bool per_expert() const { return layout_.storage == ExpertStorage::PerExpert; }

  void check_dtype(int layer, const std::string& tensor, DType t) {
    if (!expert_dtype_) {
      expert_dtype_ = t;
      return;
    }
    if (t != *expert_dtype_)
      problem(layer, tensor, std::string("dtype ") + dtype_name(t) + " differs from the other experts' " +
                                 dtype_name(*expert_dtype_) + " [DTypeMismatch]");
  }

  // DeepSeek block FP8 (formats.md 6): weight_scale_inv beside each weight.
  void check_block_scale(int layer, const std::string& weight, int64_t n, int64_t k) {
    int64_t bn = 128, bk = 128;
    const auto& block = p_.quant.raw.value("weight_block_size", nlohmann::json());
    if (block.is_array() && block.size() == 2 && block[0].is_number_integer() &&
        block[1].is_number_integer() && block[0].get<int64_t>() > 0 && block[1].get<int64_t>() > 0) {
      bn = block[0].get<int64_t>();
      bk = block[1].get<int64_t>();
    }
    const std::string scale = weight + "_scale_inv";
    if (!ck_.has(scale)) {
      problem(layer, scale, "block scale missing for the FP8 weight [MissingTensor]");
      return;
    }
    Shape want = {(n + bn - 1) / bn, (k + bk - 1) / bk};
    if (ck_.view(scale).shape != want)
      problem(layer, scale, "shape " + shape_str(ck_.view(scale).shape) + ", expected " +
                                shape_str(want) + " for " + std::to_string(bn) + "x" +
                                std::to_string(bk) + " blocks [ShapeMismatch]");
  }

  void check_experts(int L) {
    const int E = p_.num_experts;
    int present = 0;
    for (int e = 0; e < E; ++e) {
      bool all = true;
      for (Proj pr : kProjs) {
        const std::string name = m_.name(per_expert() ? tmpl_of(pr) : pr == Proj::Down ? layout_.down
                                                                                        : layout_.gate,
                                         L, e);
        if (!quant_.dense_shapes) {
          if (!any_with_prefix(stem(name))) {
            problem(L, name, "no tensor " + stem(name) + "* in the checkpoint [MissingTensor]");
            all = false;
          }
          continue;
        }
        all = attempt(L, [&] {
          MatrixView v = m_.expert_weight(L, e, pr);
          check_dtype(L, name, v.dtype);
          if (quant_.block_scales && per_expert()) check_block_scale(L, name, v.rows, v.cols);
        }) && all;
      }
      if (p_.has_expert_bias)
        for (Proj pr : {Proj::Gate, Proj::Down}) all = attempt(L, [&] { m_.expert_bias(L, e, pr); }) && all;
      present += all ? 1 : 0;
    }
    summary(L).experts_present = present;
    // An expert past the end means config.json and the tensors disagree on the expert count.
    if (per_expert()) {
      const std::string extra = m_.name(layout_.gate, L, E);
      if (any_with_prefix(stem(extra)))
        problem(L, extra, "expert " + std::to_string(E) + " is present but config.json says " +
                              std::to_string(E) + " experts");
    }
  }

  void check_shared(int L) {
    const bool declared = p_.shared_intermediate_size > 0;
    if (*layout_.shared_gate && !declared) {
      const std::string n = m_.name(layout_.shared_gate, L);
      if (any_with_prefix(stem(n)))
        problem(L, n, "shared expert present but config.json declares none");
    }
    if (!declared || !*layout_.shared_gate) return;
    for (Proj pr : kProjs) {
      if (quant_.dense_shapes) {
        attempt(L, [&] { m_.shared_weight(L, pr); });
      } else {
        const char* t = pr == Proj::Gate ? layout_.shared_gate : pr == Proj::Up ? layout_.shared_up
                                                                                 : layout_.shared_down;
        const std::string n = m_.name(t, L);
        if (!any_with_prefix(stem(n))) problem(L, n, "no tensor " + stem(n) + "* [MissingTensor]");
      }
    }
    if (p_.has_shared_expert_gate) attempt(L, [&] { m_.shared_expert_gate(L); });
  }

  void check_layer(int L) {
    LayerSummary& s = summary(L);
    std::set<std::string> dtypes;
    const std::string block = m_.name("{B}.", L);
    for (auto it = std::lower_bound(names_.begin(), names_.end(), block);
         it != names_.end() && it->compare(0, block.size(), block) == 0; ++it) {
      TensorView v = ck_.view(*it);
      ++s.tensors;
      s.bytes += v.nbytes;
      dtypes.insert(dtype_name(v.dtype));
    }
    s.dtypes.assign(dtypes.begin(), dtypes.end());
    const size_t before = r_.problems.size();
    attempt(L, [&] { m_.router_weight(L); });
    if (p_.routing.has_router_bias) attempt(L, [&] { m_.router_bias(L); });
    if (p_.routing.has_correction_bias) attempt(L, [&] { m_.correction_bias(L); });
    check_experts(L);
    check_shared(L);
    s.problems = static_cast<int>(r_.problems.size() - before);
  }

  // A router in a layer the config makes dense: the MoE-layer rule and the tensors disagree.
  void check_dense_layers() {
    std::set<int> moe(p_.moe_layers.begin(), p_.moe_layers.end());
    for (int L = 0; L < p_.num_layers; ++L) {
      if (moe.count(L)) continue;
      const std::string router = m_.name(layout_.router_weight, L);
      if (ck_.has(router))
        problem(L, router, "router present, but config.json makes layer " + std::to_string(L) +
                               " dense (" + family_name(p_.family) + " MoE-layer rule)");
    }
  }

  LayerSummary& summary(int L) {
    auto it = layer_index_.find(L);
    if (it != layer_index_.end()) return r_.layers[it->second];
    layer_index_[L] = r_.layers.size();
    r_.layers.push_back({});
    r_.layers.back().layer = L;
    return r_.layers.back();
  }

  const Checkpoint& ck_;
  ValidateReport& r_;
  const ModelProfile& p_;
  ExpertMapping m_;
  const FamilyLayout& layout_;
  std::vector<std::string> names_;
  const QuantCheckRow& quant_;
  std::optional<DType> expert_dtype_;
  std::set<std::string> seen_;
  std::map<int, size_t> layer_index_;
};

void scan_values(const Checkpoint& ck, const ValidateOptions& opt, ValidateReport& r) {
  std::vector<ScanSource> sources;
  std::map<std::string, int> layer_of;
  uint64_t bytes = 0;
  for (int L : r.profile.moe_layers) {
    if (L < 0 || L >= r.profile.num_layers) continue;
    for (const auto& n : moe_block_tensors(ck, r.profile, L)) {
      const CatalogueEntry& c = ck.find(n);
      const TensorEntry& e = *c.entry;
      if (!has_nonfinite_encodings(e.dtype)) continue;
      // Read from the file by offset (pread), not through the mapping: see docs/perf.md.
      const SafetensorsFile& f = *ck.files()[c.file];
      sources.push_back({n, e.dtype, e.shape, e.end - e.begin, nullptr, f.path(),
                         f.header().data_offset + e.begin});
      layer_of[n] = L;
      bytes += e.end - e.begin;
    }
  }
  const int threads = opt.threads > 0 ? opt.threads : default_threads();
  auto t0 = std::chrono::steady_clock::now();
  std::vector<TensorScan> scans;
  {
    Progress progress("scan-values", bytes, opt.quiet);
    scans = scan_tensors(sources, threads, &progress);
  }
  r.scan_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.scanned = true;
  r.scanned_tensors = scans.size();
  r.scanned_bytes = bytes;
  for (auto& s : scans) {
    if (s.nan + s.inf == 0) continue;
    r.problems.push_back({layer_of[s.name], s.name,
                          std::to_string(s.nan) + " NaN and " + std::to_string(s.inf) + " Inf among " +
                              std::to_string(s.elements) + " values, first at " +
                              index_str(s.shape, s.first)});
    for (auto& l : r.layers)
      if (l.layer == layer_of[s.name]) ++l.problems;
    r.nonfinite.push_back(std::move(s));
  }
}

}  // namespace

std::vector<std::string> moe_block_tensors(const Checkpoint& ck, const ModelProfile& profile,
                                           int layer) {
  ExpertMapping m(ck, profile);
  const std::string block = m.name("{B}.", layer);
  std::vector<std::string> out;
  for (const auto& n : ck.names())
    if (n.compare(0, block.size(), block) == 0) out.push_back(n);
  return out;
}

ValidateReport validate(const Checkpoint& ck, const ValidateOptions& options) {
  const std::string cfg_path = ck.root() + "/config.json";
  MOE_CHECK(ck.has_config(), InvalidConfig, cfg_path, "",
            "config.json not found: validate needs it to know the model");
  ValidateReport r;
  r.path = ck.root();
  r.profile = profile_from_config(ck.config(), cfg_path);
  Validator v(ck, r);
  v.run();
  if (options.scan_values) scan_values(ck, options, r);
  return r;
}

nlohmann::json report_to_json(const ValidateReport& r) {
  nlohmann::json problems = nlohmann::json::array(), layers = nlohmann::json::array(),
                 nonfinite = nlohmann::json::array();
  for (const auto& p : r.problems)
    problems.push_back({{"layer", p.layer}, {"tensor", p.tensor}, {"text", p.text}});
  for (const auto& l : r.layers)
    layers.push_back({{"layer", l.layer},
                      {"experts_present", l.experts_present},
                      {"tensors", l.tensors},
                      {"bytes", l.bytes},
                      {"dtypes", l.dtypes},
                      {"problems", l.problems}});
  for (const auto& s : r.nonfinite)
    nonfinite.push_back({{"tensor", s.name},
                         {"dtype", dtype_name(s.dtype)},
                         {"shape", s.shape},
                         {"elements", s.elements},
                         {"nan", s.nan},
                         {"inf", s.inf},
                         {"first_index", s.first},
                         {"first_location", index_str(s.shape, s.first)}});
  nlohmann::json j = {{"path", r.path},
                      {"ok", r.ok()},
                      {"family", family_name(r.profile.family)},
                      {"num_experts", r.profile.num_experts},
                      {"moe_layers", r.profile.moe_layers},
                      {"problems", problems},
                      {"layers", layers},
                      {"notes", r.notes}};
  if (r.scanned)
    j["scan"] = {{"tensors", r.scanned_tensors},
                 {"bytes", r.scanned_bytes},
                 {"seconds", r.scan_seconds},
                 {"bytes_per_second", r.scan_seconds > 0 ? r.scanned_bytes / r.scan_seconds : 0.0},
                 {"nonfinite", nonfinite}};
  return j;
}

}  // namespace moe
