#include "reference/run_report.h"

#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>

#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "mapping/expert_mapping.h"
#include "reference/checkpoint_weights.h"
#include "reference/diff.h"
#include "reference/moe_reference.h"
#include "reference/tolerance.h"

namespace moe {

namespace {

// CPU time of the whole process: the reference's share of a shared, busy machine.
double process_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

bool is_file(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string layer_tensor(int layer, const char* name) {
  return "layers." + std::to_string(layer) + "." + name;
}

uint64_t mix_seed(uint64_t seed, int layer, uint64_t salt) {
  // splitmix64 of (seed, layer, purpose): independent streams per layer and per use
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (static_cast<uint64_t>(layer) + 1) + salt;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The layers to run: --layers (each must be in the set), else all; with --inputs only those the
// file has.
std::vector<int> select_layers(const ShardSet& set, const RunOptions& o,
                               const SafetensorsFile* inputs) {
  const std::vector<int>& held = set.profile().moe_layers;
  std::vector<int> layers = o.layers.empty() ? held : o.layers;
  for (int l : layers) {
    bool ok = std::find(held.begin(), held.end(), l) != held.end();
    std::string list;
    for (int h : held) list += (list.empty() ? "" : ",") + std::to_string(h);
    MOE_CHECK(ok, InvalidArgument, "", "",
              "layer " + std::to_string(l) + " is not a MoE layer of this shard set (it holds " +
                  list + ")");
  }
  if (!inputs) return layers;
  std::vector<int> present;
  for (int l : layers)
    if (inputs->has(layer_tensor(l, "hidden_states"))) present.push_back(l);
  MOE_CHECK(!present.empty(), InvalidArgument, inputs->path(), "",
            "holds no layers.{L}.hidden_states for any selected MoE layer");
  return present;
}

std::vector<float> read_hidden_states(const SafetensorsFile& f, int layer, int hidden, int& tokens) {
  const std::string name = layer_tensor(layer, "hidden_states");
  const TensorView v = f.view(name);
  const DTypeTraits& tr = dtype_traits(v.dtype);
  MOE_CHECK(tr.is_float && tr.decode != nullptr && tr.bits >= 8, DTypeMismatch, f.path(), name,
            std::string("dtype ") + tr.name + " is not a float type");
  MOE_CHECK(v.shape.size() == 2 && v.shape[1] == hidden && v.shape[0] >= 1, ShapeMismatch,
            f.path(), name,
            "shape " + shape_str(v.shape) + ", expected [T, " + std::to_string(hidden) + "]");
  tokens = static_cast<int>(v.shape[0]);
  std::vector<float> x(static_cast<size_t>(v.numel()));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(v.at(static_cast<int64_t>(i)));
  return x;
}

template <typename T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

template <typename T>
std::vector<T> rows(const std::vector<T>& m, int64_t width, const std::vector<int>& which) {
  std::vector<T> out;
  out.reserve(which.size() * static_cast<size_t>(width));
  for (int r : which) out.insert(out.end(), m.begin() + r * width, m.begin() + (r + 1) * width);
  return out;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

ShardSet open_run_target(const std::string& path) {
  if (is_file(path + "/manifest.json")) return ShardSet::open(path);
  return ShardSet::from_checkpoint(path);
}

std::string weight_encoding(const ShardSet& set) {
  const auto& m = set.manifest();
  if (m.contains("encodings") && m["encodings"].is_object()) {
    std::string enc = m["encodings"].value("w13_weight", std::string("dense"));
    if (enc != "dense") return enc;
  }
  const std::vector<int>& layers = set.profile().moe_layers;
  if (layers.empty()) return "dense";
  return dtype_name(set.layer(0, layers.front()).w13.dtype);
}

std::vector<int> sample_tokens(int tokens, int ref_tokens, uint64_t seed, int layer) {
  std::vector<int> all(tokens);
  std::iota(all.begin(), all.end(), 0);
  if (ref_tokens <= 0 || ref_tokens >= tokens) return all;
  std::mt19937_64 rng(mix_seed(seed, layer, 2));
  for (int i = 0; i < ref_tokens; ++i) {  // partial Fisher-Yates
    std::uniform_int_distribution<int> pick(i, tokens - 1);
    std::swap(all[i], all[pick(rng)]);
  }
  all.resize(ref_tokens);
  std::sort(all.begin(), all.end());
  return all;
}

std::vector<float> random_hidden_states(int tokens, int hidden, uint64_t seed, int layer) {
  std::mt19937_64 rng(mix_seed(seed, layer, 1));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(tokens) * hidden);
  for (float& v : x) v = normal(rng);
  return x;
}

RunReport run_check(const ShardSet& set, MoeBackend& backend, const std::string& target,
                    const RunOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  MOE_CHECK(o.tokens >= 1, InvalidArgument, "", "", "--tokens must be at least 1");
  MOE_CHECK(o.ref_tokens >= 0, InvalidArgument, "", "", "--ref-tokens must not be negative");
  const int threads = o.threads > 0 ? o.threads : default_threads();

  // The reference reads the SOURCE checkpoint, independent of what the conversion wrote.
  MOE_CHECK(!set.source_path().empty(), InvalidShard, target + "/manifest.json", "",
            "the manifest names no source checkpoint for the reference");
  const Checkpoint ckpt = Checkpoint::open(set.source_path());
  const std::string config_path = ckpt.root() + "/config.json";
  MOE_CHECK(ckpt.has_config(), InvalidConfig, config_path, "", "no config.json beside the source");
  const ModelProfile source_profile = profile_from_config(ckpt.config(), config_path);
  const std::string mismatch = model_difference(source_profile, set.profile());
  MOE_CHECK(mismatch.empty(), InvalidShard, target, "",
            "the shard set's profile differs from its source's config.json: " + mismatch);
  const ExpertMapping mapping(ckpt, source_profile);

  std::unique_ptr<SafetensorsFile> inputs;
  if (!o.inputs_file.empty()) inputs = std::make_unique<SafetensorsFile>(o.inputs_file);
  const std::vector<int> layers = select_layers(set, o, inputs.get());

  RunReport report;
  report.target = target;
  report.source = set.source_path();
  report.backend = backend.name();
  report.encoding = weight_encoding(set);
  const Tolerance table = default_tolerance(report.backend, report.encoding);
  report.tolerance_basis = o.rtol || o.atol ? table.basis + " overridden by --rtol/--atol"
                                            : table.basis;

  const int H = source_profile.hidden_size, K = source_profile.top_k, E = source_profile.num_experts;
  const uint64_t expert_bytes =
      layers.empty() ? 0 : CheckpointLayerWeights(ckpt, mapping, layers.front()).expert_bytes();
  uint64_t total = 0;  // an upper bound: the experts the checked tokens can select
  for (int layer : layers) {
    int64_t t_all = o.tokens;
    if (inputs) {  // a bad shape is reported by read_hidden_states below, naming the tensor
      const Shape& shape = inputs->view(layer_tensor(layer, "hidden_states")).shape;
      t_all = shape.empty() ? 0 : shape[0];
    }
    const int64_t t = o.ref_tokens > 0 ? std::min<int64_t>(o.ref_tokens, t_all) : t_all;
    total += static_cast<uint64_t>(std::min<int64_t>(E, t * K)) * expert_bytes;
  }
  Progress progress("run: reference", total, o.quiet);
  ScratchPool<MlpWeights> scratch;
  std::vector<OwnedTensor> dump;

  for (int layer : layers) {
    LayerResult r;
    r.layer = layer;
    int tokens = o.tokens;
    std::vector<float> x = inputs ? read_hidden_states(*inputs, layer, H, tokens)
                                  : random_hidden_states(tokens, H, o.seed, layer);
    r.tokens = tokens;

    std::vector<int32_t> ids(static_cast<size_t>(tokens) * K);
    std::vector<float> weights(ids.size()), out(static_cast<size_t>(tokens) * H);
    const auto t0 = std::chrono::steady_clock::now();
    backend.run_layer(set, layer, x.data(), tokens, {ids.data(), weights.data(), out.data()});
    const auto t1 = std::chrono::steady_clock::now();
    r.backend_seconds = std::chrono::duration<double>(t1 - t0).count();
    const double cpu1 = process_cpu_seconds();

    const std::vector<int> checked = sample_tokens(tokens, o.ref_tokens, o.seed, layer);
    const int n = static_cast<int>(checked.size());
    r.ref_tokens = n;
    const std::vector<float> xs = rows(x, H, checked);
    const std::vector<int32_t> ids_s = rows(ids, K, checked);
    const std::vector<float> out_s = rows(out, H, checked);
    const std::vector<float> w_s = rows(weights, K, checked);
    std::vector<float> ref_out(static_cast<size_t>(n) * H, 0.0f);

    auto bad_id = std::find_if(ids_s.begin(), ids_s.end(), [&](int32_t id) { return id < 0 || id >= E; });
    if (bad_id != ids_s.end()) {
      r.metrics.finite = false;
      r.metrics.rel_l2 = r.metrics.max_abs = INFINITY;
      r.note = "backend routed to expert id " + std::to_string(*bad_id) + " (not within 0.." +
               std::to_string(E - 1) + ")";
    } else {
      const CheckpointLayerWeights lw(ckpt, mapping, layer);
      const Routing own = reference_routing(source_profile, lw, xs.data(), n, Precision::F64);
      r.routing_agreement = routing_agreement(own.ids.data(), ids_s.data(), n, K);
      const Routing under =
          reference_routing_for(source_profile, lw, xs.data(), n, ids_s, Precision::F64);
      for (size_t i = 0; i < w_s.size(); ++i)
        r.weight_max_abs = std::max(r.weight_max_abs, std::fabs(w_s[i] - under.weights[i]));
      const std::vector<double> ref = reference_block_under(
          source_profile, lw, xs.data(), n, under, {Precision::F64, threads, &progress, &scratch});
      r.metrics = compare(out_s.data(), ref.data(), static_cast<int64_t>(ref.size()));
      for (size_t i = 0; i < ref.size(); ++i) ref_out[i] = static_cast<float>(ref[i]);
      if (!r.metrics.finite) r.note = "backend output has NaN/Inf";
    }
    r.reference_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    r.reference_cpu_seconds = process_cpu_seconds() - cpu1;
    const Verdict v = judge(r.metrics, table, o.rtol, o.atol);
    r.rtol = v.rtol;
    r.atol = v.atol;
    r.pass = v.pass && r.note.empty();
    report.layers.push_back(r);

    if (!o.dump_file.empty()) {
      const int64_t T = tokens;
      dump.push_back({layer_tensor(layer, "hidden_states"), DType::F32, {T, H}, bytes_of(x)});
      dump.push_back({layer_tensor(layer, "output"), DType::F32, {T, H}, bytes_of(out)});
      dump.push_back({layer_tensor(layer, "reference"), DType::F32, {n, H}, bytes_of(ref_out)});
      dump.push_back({layer_tensor(layer, "reference_tokens"), DType::I32, {n},
                      bytes_of(std::vector<int32_t>(checked.begin(), checked.end()))});
      dump.push_back({layer_tensor(layer, "topk_ids"), DType::I32, {T, K}, bytes_of(ids)});
      dump.push_back({layer_tensor(layer, "topk_weights"), DType::F32, {T, K}, bytes_of(weights)});
    }
  }
  progress.finish();
  if (!o.dump_file.empty())
    write_safetensors(o.dump_file, dump,
                      {{"format", "moe-tool-run-dump"}, {"backend", report.backend},
                       {"target", target}});
  report.pass = std::all_of(report.layers.begin(), report.layers.end(),
                            [](const LayerResult& l) { return l.pass; });
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

nlohmann::json RunReport::to_json() const {
  nlohmann::json j = {{"target", target},
                      {"source", source},
                      {"backend", backend},
                      {"encoding", encoding},
                      {"reference_precision", reference_precision},
                      {"tolerance_basis", tolerance_basis},
                      {"pass", pass},
                      {"seconds", seconds},
                      {"layers", nlohmann::json::array()}};
  for (const LayerResult& l : layers) {
    nlohmann::json e = metrics_to_json(l.metrics);
    e["layer"] = l.layer;
    e["tokens"] = l.tokens;
    e["checked_tokens"] = l.ref_tokens;
    e["routing_agreement"] = l.routing_agreement;
    e["routing_weight_max_abs"] = l.weight_max_abs;
    e["backend_seconds"] = l.backend_seconds;
    e["reference_seconds"] = l.reference_seconds;
    e["reference_cpu_seconds"] = l.reference_cpu_seconds;
    e["rtol"] = l.rtol;
    e["atol"] = l.atol;
    e["pass"] = l.pass;
    if (!l.note.empty()) e["note"] = l.note;
    j["layers"].push_back(e);
  }
  return j;
}

std::string RunReport::table() const {
  std::string s = "run: " + backend + " backend on " + target + " (" + encoding +
                  " weights); reference " + reference_precision + " from " + source +
                  "; tolerance " + tolerance_basis + "\n";
  char line[256];
  std::snprintf(line, sizeof line, "%5s %7s %7s %10s %10s %12s %8s %10s %10s  %s\n", "layer",
                "tokens", "checked", "max_abs", "rel_l2", "cosine", "routing", "rtol", "atol",
                "result");
  s += line;
  int failed = 0;
  double backend_s = 0, reference_s = 0;
  for (const LayerResult& l : layers) {
    failed += !l.pass;
    backend_s += l.backend_seconds;
    reference_s += l.reference_seconds;
    std::snprintf(line, sizeof line, "%5d %7d %7d %10s %10s %12s %7.1f%% %10s %10s  %s",
                  l.layer, l.tokens, l.ref_tokens, fmt("%.3e", l.metrics.max_abs).c_str(),
                  fmt("%.3e", l.metrics.rel_l2).c_str(), fmt("%.8f", l.metrics.cosine).c_str(),
                  100.0 * l.routing_agreement, fmt("%.2e", l.rtol).c_str(),
                  fmt("%.2e", l.atol).c_str(), l.pass ? "PASS" : "FAIL");
    s += line;
    s += l.note.empty() ? "\n" : "  (" + l.note + ")\n";
  }
  std::string failed_list;
  for (const LayerResult& l : layers)
    if (!l.pass) failed_list += (failed_list.empty() ? "" : ", ") + std::to_string(l.layer);
  s += failed ? std::to_string(failed) + " of " + std::to_string(layers.size()) +
                    " layers FAILED (layer " + failed_list + ")\n"
              : "all " + std::to_string(layers.size()) + " layers passed (" +
                    fmt("%.1f", seconds) + " s; backend " + fmt("%.1f", backend_s) +
                    " s, reference " + fmt("%.1f", reference_s) + " s)\n";
  return s;
}

}  // namespace moe
