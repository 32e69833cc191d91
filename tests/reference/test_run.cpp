// `run` end to end on synthetic checkpoints (lib/model/synthetic.h): the CPU backend against the
// float64 reference for every family, straight from a checkpoint and from shard sets of a spread
// of plans; faulty backends and corrupted shards must fail; dumps hold what the backend returned
// and replay through --inputs; `diff` reassembles shard sets exactly, measures a perturbed copy
// exactly and refuses different models. The CLI cases run the built tool through $MOE_TOOL.
#include <sys/wait.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "mapping/expert_mapping.h"
#include "model/synthetic.h"
#include "reference/checkpoint_weights.h"
#include "reference/diff.h"
#include "reference/moe_reference.h"
#include "reference/run_report.h"
#include "runtime/backend.h"
#include "shard/convert.h"
#include "support/temp_dir.h"

using namespace moe;
using namespace moe::test;
namespace fs = std::filesystem;

namespace {

constexpr Family kFamilies[] = {Family::Mixtral,    Family::Qwen2Moe,   Family::Qwen3Moe,
                                Family::DeepseekV2, Family::DeepseekV3, Family::Glm4Moe,
                                Family::Olmoe,      Family::GraniteMoe, Family::Llama4,
                                Family::GptOss,     Family::Ernie45Moe};

SyntheticSpec spec_for(Family f, uint64_t seed, DType dtype = DType::BF16) {
  SyntheticSpec s;
  s.family = f;
  s.dtype = dtype;
  s.num_layers = 2;
  s.hidden_size = 24;
  s.moe_intermediate_size = 12;
  s.dense_intermediate_size = 16;
  s.num_experts = 8;
  s.top_k = 2;
  s.vocab_size = 16;
  s.seed = seed;
  s.threads = 1;
  return s;
}

RunOptions quiet_run(int tokens) {
  RunOptions o;
  o.tokens = tokens;
  o.threads = 2;
  o.quiet = true;
  return o;
}

// Every layer passes, with real (nonzero, finite, tiny) errors and routing that agrees.
void check_all_pass(const RunReport& r, size_t layers) {
  REQUIRE(r.layers.size() == layers);
  for (const LayerResult& l : r.layers) {
    INFO("layer " << l.layer << " rel_l2 " << l.metrics.rel_l2 << " note " << l.note);
    CHECK(l.pass);
    CHECK(l.metrics.finite);
    CHECK(l.metrics.rel_l2 < 1e-5);
    CHECK(l.metrics.ref_max_abs > 0);
    CHECK(l.routing_agreement >= 0.9);
    CHECK(l.weight_max_abs < 1e-5);
  }
  CHECK(r.pass);
}

int run_tool(const std::string& args, std::string* output = nullptr) {
  const char* tool = std::getenv("MOE_TOOL");
  REQUIRE(tool != nullptr);
  TempDir tmp;
  const std::string out = tmp / "out.txt";
  int status = std::system((std::string(tool) + " " + args + " > " + out + " 2>&1").c_str());
  if (output) *output = read_text(out);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

ConvertOptions convert_opts(int tp, int ep, int redundant, Placement placement,
                            int64_t pad_hidden, int64_t pad_inter, W13Order order) {
  ConvertOptions o;
  o.plan.tp = tp;
  o.plan.ep = ep;
  o.plan.redundant_experts = redundant;
  o.plan.placement = placement;
  o.plan.pad_hidden_to = pad_hidden;
  o.plan.pad_intermediate_to = pad_inter;
  o.plan.w13_order = order;
  o.threads = 1;
  o.quiet = true;
  o.moe_only = true;
  return o;
}

// Wraps the CPU backend and breaks its result in one controlled way.
class FaultyBackend : public MoeBackend {
 public:
  enum Fault { None, ScaleOutput, ShuffleTopk, BadId, ScaleWeights };
  explicit FaultyBackend(Fault f) : fault_(f), inner_(make_cpu_backend(1)) {}
  std::string name() const override { return "cpu"; }
  void run_layer(const ShardSet& set, int layer, const float* x, int tokens,
                 const LayerOutputs& o) override {
    inner_->run_layer(set, layer, x, tokens, o);
    const int H = set.profile().hidden_size, K = set.profile().top_k;
    if (fault_ == ScaleOutput)
      for (int64_t i = 0; i < static_cast<int64_t>(tokens) * H; ++i) o.out[i] *= 1.001f;
    if (fault_ == ShuffleTopk)  // same sets, other order: must still pass
      for (int t = 0; t < tokens; ++t) {
        std::swap(o.topk_ids[t * K], o.topk_ids[t * K + K - 1]);
        std::swap(o.topk_weights[t * K], o.topk_weights[t * K + K - 1]);
      }
    if (fault_ == BadId) o.topk_ids[K] = set.profile().num_experts;
    if (fault_ == ScaleWeights)  // reported weights off, outputs right: a report-only signal
      for (int64_t i = 0; i < static_cast<int64_t>(tokens) * K; ++i) o.topk_weights[i] *= 2.0f;
  }

 private:
  Fault fault_;
  std::unique_ptr<MoeBackend> inner_;
};

}  // namespace

TEST_CASE("run: CPU backend on a checkpoint passes for every family", "[reference][run]") {
  TempDir tmp;
  uint64_t seed = 40;
  for (Family f : kFamilies) {
    INFO("family " << family_name(f));
    const std::string ckpt = tmp / family_name(f);
    write_synthetic_checkpoint(ckpt, spec_for(f, ++seed));
    const ShardSet set = ShardSet::from_checkpoint(ckpt);
    auto backend = make_cpu_backend(2);
    const RunReport r = run_check(set, *backend, ckpt, quiet_run(24));
    check_all_pass(r, set.profile().moe_layers.size());
    CHECK(r.encoding == "BF16");
    CHECK(r.tolerance_basis == "cpu/BF16");
  }
}

TEST_CASE("run: CPU backend on shard sets of a spread of plans passes", "[reference][run]") {
  struct Plan {
    int tp, ep, redundant;
    Placement placement;
    int64_t pad_hidden, pad_inter;
    W13Order order;
  };
  const Plan plans[] = {
      {2, 2, 2, Placement::Linear, 0, 0, W13Order::GateUp},
      {3, 1, 0, Placement::Linear, 0, 8, W13Order::UpGate},     // tp 3 of I = 12, padded
      {1, 3, 1, Placement::RoundRobin, 32, 0, W13Order::GateUp},  // uneven EP, padded hidden
      {2, 2, 3, Placement::RoundRobin, 16, 4, W13Order::UpGate},
  };
  // Families that exercise shared experts + gate, grouped biased routing, expert biases with
  // w2_bias on tp_rank 0, and weight-on-input.
  const Family families[] = {Family::Qwen2Moe, Family::DeepseekV3, Family::GptOss, Family::Llama4};
  TempDir tmp;
  uint64_t seed = 70;
  for (Family f : families) {
    const std::string ckpt = tmp / (std::string(family_name(f)) + "-ckpt");
    write_synthetic_checkpoint(ckpt, spec_for(f, ++seed));
    int idx = 0;
    for (const Plan& p : plans) {
      INFO("family " << family_name(f) << " plan " << idx << " tp " << p.tp << " ep " << p.ep);
      const std::string out = tmp / (std::string(family_name(f)) + "-" + std::to_string(idx++));
      convert_checkpoint(ckpt, out,
                         convert_opts(p.tp, p.ep, p.redundant, p.placement, p.pad_hidden,
                                      p.pad_inter, p.order));
      const ShardSet set = ShardSet::open(out);
      auto backend = make_cpu_backend(2);
      check_all_pass(run_check(set, *backend, out, quiet_run(32)), set.profile().moe_layers.size());

      // diff: the shard set reassembles to exactly the checkpoint's logical weights
      DiffOptions d;
      d.quiet = true;
      d.threads = 2;
      const DiffReport dr = diff_models(ckpt, out, d);
      REQUIRE(!dr.layers.empty());
      for (const LayerDiff& l : dr.layers)
        for (const TensorDiff& t : l.weights) {
          INFO("layer " << l.layer << " " << t.what);
          CHECK(t.metrics.max_abs == 0.0);
          CHECK(t.metrics.count > 0);
        }
    }
  }
}

TEST_CASE("run: a wrong backend fails, a reordered top-k does not", "[reference][run]") {
  TempDir tmp;
  write_synthetic_checkpoint(tmp / "ckpt", spec_for(Family::DeepseekV3, 9));
  const ShardSet set = ShardSet::from_checkpoint(tmp / "ckpt");
  const RunOptions o = quiet_run(16);

  FaultyBackend shuffled(FaultyBackend::ShuffleTopk);
  check_all_pass(run_check(set, shuffled, "x", o), set.profile().moe_layers.size());

  FaultyBackend scaled(FaultyBackend::ScaleOutput);  // 1e-3 relative: far above 1e-5
  RunReport r = run_check(set, scaled, "x", o);
  CHECK_FALSE(r.pass);
  for (const LayerResult& l : r.layers) {
    CHECK_FALSE(l.pass);
    CHECK(l.metrics.rel_l2 == Approx(1e-3).epsilon(0.05));
  }

  FaultyBackend bad(FaultyBackend::BadId);
  r = run_check(set, bad, "x", o);
  CHECK_FALSE(r.pass);
  CHECK(r.layers[0].note.find("expert id") != std::string::npos);

  FaultyBackend weights(FaultyBackend::ScaleWeights);
  r = run_check(set, weights, "x", o);
  CHECK(r.pass);  // outputs are right; the reported weights are off and say so
  CHECK(r.layers[0].weight_max_abs > 0.1);

  // an explicit tolerance overrides the table
  RunOptions loose = o;
  loose.rtol = 2e-3;
  loose.atol = 1.0;
  r = run_check(set, scaled, "x", loose);
  CHECK(r.pass);
  CHECK(r.tolerance_basis.find("overridden") != std::string::npos);
}

TEST_CASE("run: --ref-tokens samples deterministically; --dump replays through --inputs",
          "[reference][run]") {
  const std::vector<int> s = sample_tokens(100, 7, 3, 1);
  CHECK(s.size() == 7u);
  CHECK(std::set<int>(s.begin(), s.end()).size() == 7u);
  CHECK(std::is_sorted(s.begin(), s.end()));
  CHECK(s.back() < 100);
  CHECK(sample_tokens(100, 7, 3, 1) == s);
  CHECK(sample_tokens(100, 7, 4, 1) != s);
  CHECK(sample_tokens(5, 0, 3, 1) == std::vector<int>{0, 1, 2, 3, 4});

  TempDir tmp;
  write_synthetic_checkpoint(tmp / "ckpt", spec_for(Family::Qwen3Moe, 11));
  const ShardSet set = ShardSet::from_checkpoint(tmp / "ckpt");
  auto backend = make_cpu_backend(1);
  RunOptions o = quiet_run(20);
  o.ref_tokens = 6;
  o.dump_file = tmp / "dump.safetensors";
  const RunReport r = run_check(set, *backend, "x", o);
  check_all_pass(r, set.profile().moe_layers.size());
  CHECK(r.layers[0].ref_tokens == 6);
  CHECK(r.layers[0].tokens == 20);

  SafetensorsFile dump(o.dump_file);
  const int L = set.profile().moe_layers.front();
  const std::string pre = "layers." + std::to_string(L) + ".";
  CHECK(dump.view(pre + "output").shape == Shape{20, 24});
  CHECK(dump.view(pre + "reference").shape == Shape{6, 24});
  CHECK(dump.view(pre + "topk_ids").dtype == DType::I32);
  CHECK(dump.view(pre + "topk_weights").shape == Shape{20, 2});
  // the dumped reference rows are those of the sampled tokens: they match the outputs there
  const TensorView out = dump.view(pre + "output"), ref = dump.view(pre + "reference"),
                   rows = dump.view(pre + "reference_tokens");
  double worst = 0;
  for (int i = 0; i < 6; ++i)
    for (int h = 0; h < 24; ++h) {
      const int t = static_cast<int>(rows.at(i));
      worst = std::max(worst, std::fabs(out.at(t * 24 + h) - ref.at(i * 24 + h)));
    }
  CHECK(worst <= 1e-5 * r.layers[0].metrics.ref_max_abs);

  // replay: the dump's hidden states as --inputs give the same outputs bit for bit
  RunOptions replay = quiet_run(1);
  replay.inputs_file = o.dump_file;
  replay.dump_file = tmp / "dump2.safetensors";
  replay.layers = {L};
  const RunReport r2 = run_check(set, *backend, "x", replay);
  REQUIRE(r2.layers.size() == 1u);
  CHECK(r2.layers[0].tokens == 20);
  SafetensorsFile dump2(replay.dump_file);
  const TensorView out2 = dump2.view(pre + "output");
  REQUIRE(out2.nbytes == out.nbytes);
  CHECK(std::memcmp(out2.data, out.data, out.nbytes) == 0);

  // any float dtype: BF16 hidden states, 5 tokens, only the layer the file has runs
  std::vector<uint8_t> bf16(5 * 24 * 2);
  const TensorView hs = dump.view(pre + "hidden_states");
  for (int i = 0; i < 5 * 24; ++i) {
    const uint16_t b = f32_to_bf16(static_cast<float>(hs.at(i)));
    std::memcpy(bf16.data() + 2 * i, &b, 2);
  }
  write_safetensors(tmp / "in.safetensors",
                    {{pre + "hidden_states", DType::BF16, {5, 24}, bf16},
                     {"layers.999.hidden_states", DType::BF16, {5, 24}, bf16}});
  RunOptions from_bf16 = quiet_run(1);
  from_bf16.inputs_file = tmp / "in.safetensors";
  const RunReport r3 = run_check(set, *backend, "x", from_bf16);
  REQUIRE(r3.layers.size() == 1u);
  CHECK(r3.layers[0].layer == L);
  CHECK(r3.layers[0].tokens == 5);
  check_all_pass(r3, 1);

  from_bf16.layers = {set.profile().moe_layers.back() + 1};  // not a MoE layer of the set
  CHECK_THROWS_AS(run_check(set, *backend, "x", from_bf16), Error);
}

TEST_CASE("run CLI: an altered expert byte in one rank exits 1 and names the layer",
          "[reference][run][cli]") {
  TempDir tmp;
  const std::string ckpt = tmp / "ckpt";
  write_synthetic_checkpoint(ckpt, spec_for(Family::Mixtral, 21));
  convert_checkpoint(ckpt, tmp / "shards",
                     convert_opts(2, 2, 0, Placement::Linear, 0, 0, W13Order::GateUp));
  std::string text;
  REQUIRE(run_tool("run " + tmp / "shards" + " --device cpu --tokens 64 --quiet", &text) == 0);

  fs::copy(tmp / "shards", tmp / "bad", fs::copy_options::recursive);
  const ShardSet good = ShardSet::open(tmp / "shards");
  const int layer = good.profile().moe_layers.back();
  const std::string file = tmp / "bad" + "/" + good.ranks().at(1).file;  // tp_rank 1, ep_rank 0
  uint64_t begin, count;
  {
    SafetensorsFile f(file);
    const TensorEntry& e = f.entry("layers." + std::to_string(layer) + ".w13_weight");
    begin = f.header().data_offset + e.begin;
    count = (e.end - e.begin) / e.shape[0];  // local expert 0 only (logical expert 0 here)
  }
  {
    std::fstream io(file, std::ios::in | std::ios::out | std::ios::binary);
    for (uint64_t off = 1; off < count; off += 2) {  // bf16 high bytes: sign and exponent
      io.seekg(static_cast<std::streamoff>(begin + off));
      char c;
      io.read(&c, 1);
      c ^= 0x01;  // one exponent bit: each value doubles or halves
      io.seekp(static_cast<std::streamoff>(begin + off));
      io.write(&c, 1);
    }
  }
  CHECK(run_tool("run " + tmp / "bad" + " --device cpu --tokens 64", &text) == 1);
  INFO(text);
  CHECK(text.find("FAILED (layer " + std::to_string(layer) + ")") != std::string::npos);
  CHECK(run_tool("run " + tmp / "bad" + " --device cpu --tokens 64 --json", &text) == 1);
  const auto j = nlohmann::json::parse(text);
  CHECK(j["pass"] == false);
  for (const auto& l : j["layers"]) CHECK(l["pass"] == (l["layer"] != layer));

  // bad input: exit 2
  CHECK(run_tool("run " + tmp / "nowhere" + " --device cpu", &text) == 2);
  CHECK(run_tool("run " + tmp / "shards" + " --device cpu --layers 99", &text) == 2);
  CHECK(text.find("layer 99") != std::string::npos);
}

TEST_CASE("diff CLI: weight and output differences, different models refused", "[reference][cli]") {
  TempDir tmp;
  write_synthetic_checkpoint(tmp / "bf16", spec_for(Family::Qwen3Moe, 31, DType::BF16));
  write_synthetic_checkpoint(tmp / "f32", spec_for(Family::Qwen3Moe, 31, DType::F32));
  SyntheticSpec other = spec_for(Family::Qwen3Moe, 31);
  other.num_experts = 16;
  write_synthetic_checkpoint(tmp / "other", other);

  std::string text;
  REQUIRE(run_tool("diff " + tmp / "f32" + " " + tmp / "bf16" + " --outputs --json", &text) == 0);
  const auto j = nlohmann::json::parse(text);
  REQUIRE(j["layers"].size() == 2u);
  for (const auto& l : j["layers"]) {
    for (const char* p : {"gate", "up", "down", "router"}) {
      INFO(p);
      const double rel = l["weights"][p]["rel_l2"];
      CHECK(rel > 1e-4);  // bf16 rounding of the same values: about 2^-9 relative
      CHECK(rel < 5e-3);
    }
    CHECK(l["output"]["rel_l2"].get<double>() > 0);
    CHECK(l["output"]["rel_l2"].get<double>() < 2e-2);
  }
  CHECK(run_tool("diff " + tmp / "bf16" + " " + tmp / "other", &text) == 2);
  CHECK(text.find("num_experts 8 vs 16") != std::string::npos);
}

TEST_CASE("run: F16 and F32 shard sets pass under their own tolerance rows", "[reference][run]") {
  TempDir tmp;
  uint64_t seed = 90;
  for (DType dt : {DType::F16, DType::F32}) {
    INFO(dtype_name(dt));
    const std::string ckpt = tmp / (std::string("ckpt-") + dtype_name(dt));
    const std::string out = tmp / (std::string("shards-") + dtype_name(dt));
    write_synthetic_checkpoint(ckpt, spec_for(Family::DeepseekV3, ++seed, dt));
    convert_checkpoint(ckpt, out,
                       convert_opts(2, 2, 1, Placement::RoundRobin, 32, 8, W13Order::GateUp));
    const ShardSet set = ShardSet::open(out);
    auto backend = make_cpu_backend(2);
    const RunReport r = run_check(set, *backend, out, quiet_run(24));
    check_all_pass(r, set.profile().moe_layers.size());
    CHECK(r.encoding == dtype_name(dt));
    CHECK(r.tolerance_basis == std::string("cpu/") + dtype_name(dt));
  }
}

TEST_CASE("run: --dump holds the backend's full block output, its logical routing and the "
          "reference",
          "[reference][run]") {
  // Qwen2-MoE: a shared expert with its sigmoid gate, so "full block output" is testable.
  TempDir tmp;
  const std::string ckpt = tmp / "ckpt";
  write_synthetic_checkpoint(ckpt, spec_for(Family::Qwen2Moe, 57));
  convert_checkpoint(ckpt, tmp / "shards",
                     convert_opts(2, 2, 2, Placement::RoundRobin, 0, 0, W13Order::UpGate));
  const ShardSet set = ShardSet::open(tmp / "shards");
  const ModelProfile& p = set.profile();
  const int T = 15, H = p.hidden_size, K = p.top_k, E = p.num_experts;
  auto backend = make_cpu_backend(2);
  RunOptions o = quiet_run(T);
  o.seed = 5;
  o.dump_file = tmp / "dump.safetensors";
  const RunReport r = run_check(set, *backend, "x", o);
  check_all_pass(r, p.moe_layers.size());

  const SafetensorsFile dump(o.dump_file);
  const Checkpoint source = Checkpoint::open(ckpt);
  const ExpertMapping mapping(source, p);
  auto floats = [](const TensorView& v) {
    std::vector<float> out(static_cast<size_t>(v.numel()));
    std::memcpy(out.data(), v.data, out.size() * 4);
    return out;
  };
  auto rel_l2 = [](const std::vector<float>& a, const std::vector<double>& ref) {
    return compare(a.data(), ref.data(), static_cast<int64_t>(ref.size())).rel_l2;
  };
  for (int L : p.moe_layers) {
    INFO("layer " << L);
    const std::string pre = "layers." + std::to_string(L) + ".";
    const TensorView hs = dump.view(pre + "hidden_states"), out = dump.view(pre + "output"),
                     ref = dump.view(pre + "reference"), ids = dump.view(pre + "topk_ids"),
                     w = dump.view(pre + "topk_weights");
    CHECK(out.dtype == DType::F32);
    CHECK(out.shape == Shape{T, H});
    CHECK(ref.shape == Shape{T, H});  // --ref-tokens 0: every token checked
    CHECK(ids.dtype == DType::I32);
    CHECK(ids.shape == Shape{T, K});
    CHECK(w.shape == Shape{T, K});

    // exactly what the backend returns for these hidden states
    const std::vector<float> x = floats(hs);
    CHECK(x == random_hidden_states(T, H, o.seed, L));
    std::vector<int32_t> ids2(static_cast<size_t>(T) * K);
    std::vector<float> w2(ids2.size()), out2(static_cast<size_t>(T) * H);
    backend->run_layer(set, L, x.data(), T, {ids2.data(), w2.data(), out2.data()});
    CHECK(std::memcmp(ids.data, ids2.data(), ids.nbytes) == 0);
    CHECK(std::memcmp(w.data, w2.data(), w.nbytes) == 0);
    CHECK(std::memcmp(out.data, out2.data(), out.nbytes) == 0);

    // logical ids (the set has 10 physical experts for 8 logical), distinct per token, the
    // reference's own choice; weights the reference's for those ids
    std::vector<int32_t> id_vec(ids2);
    for (int t = 0; t < T; ++t) {
      std::set<int32_t> row(id_vec.begin() + t * K, id_vec.begin() + (t + 1) * K);
      CHECK(row.size() == static_cast<size_t>(K));
      CHECK(*row.begin() >= 0);
      CHECK(*row.rbegin() < E);
    }
    const CheckpointLayerWeights lw(source, mapping, L);
    const Routing own = reference_routing(p, lw, x.data(), T, Precision::F64);
    CHECK(routing_agreement(own.ids.data(), id_vec.data(), T, K) >= 0.9);
    const Routing under = reference_routing_for(p, lw, x.data(), T, id_vec, Precision::F64);
    const std::vector<float> wf = floats(w);
    CHECK(compare(wf.data(), under.weights.data(), T * K).max_abs < 1e-6);

    // the output is routed + gated shared expert: far from the routed part alone, and the
    // dumped reference is the float64 block under the backend's ids
    const ReferenceOptions f64{Precision::F64, 2, nullptr};
    const std::vector<double> routed = routed_experts(p, lw, x.data(), T, under, f64);
    const std::vector<double> shared = shared_experts(p, lw, x.data(), T, Precision::F64);
    std::vector<double> full(routed.size());
    for (size_t i = 0; i < full.size(); ++i) full[i] = routed[i] + shared[i];
    const std::vector<float> outf = floats(out), reff = floats(ref);
    CHECK(rel_l2(outf, full) < 1e-5);
    CHECK(rel_l2(outf, routed) > 0.05);
    CHECK(rel_l2(reff, full) < 1e-7);  // float32 rounding of the float64 reference only
  }

  // the dump replays through the CLI's --inputs: same layers, same verdict
  std::string text;
  REQUIRE(run_tool("run " + tmp / "shards" + " --device cpu --json --inputs " + o.dump_file,
                   &text) == 0);
  const auto j = nlohmann::json::parse(text);
  REQUIRE(j["layers"].size() == p.moe_layers.size());
  for (const auto& l : j["layers"]) CHECK(l["tokens"] == T);
}

TEST_CASE("diff CLI: a bf16 checkpoint against a copy with one expert's up_proj perturbed",
          "[reference][cli]") {
  TempDir tmp;
  const SyntheticSpec spec = spec_for(Family::Qwen3Moe, 33, DType::BF16);
  write_synthetic_checkpoint(tmp / "a", spec);
  fs::copy(tmp / "a", tmp / "b", fs::copy_options::recursive);
  const int L = 1, E = spec.num_experts, hot = 3;
  auto up_name = [&](int e) {
    return "model.layers." + std::to_string(L) + ".mlp.experts." + std::to_string(e) +
           ".up_proj.weight";
  };
  const std::string file_b = tmp / "b" + "/model.safetensors";
  {  // b: expert 3's up_proj times (1 + 0.01 n), n ~ N(0, 1), rounded back to bf16
    uint64_t begin, bytes;
    {
      SafetensorsFile f(file_b);
      const TensorEntry& e = f.entry(up_name(hot));
      REQUIRE(f.view(up_name(hot)).dtype == DType::BF16);
      begin = f.header().data_offset + e.begin;
      bytes = e.end - e.begin;
    }
    std::vector<uint16_t> v(bytes / 2);
    std::fstream io(file_b, std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(static_cast<std::streamoff>(begin));
    io.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(bytes));
    std::mt19937 rng(4);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (uint16_t& b : v) b = f32_to_bf16(bf16_to_f32(b) * (1.0f + 0.01f * n(rng)));
    io.seekp(static_cast<std::streamoff>(begin));
    io.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(bytes));
  }
  // what diff must report for layer 1's "up", computed here from the files
  double max_abs = 0, d2 = 0, a2 = 0, b2 = 0, ab = 0;
  {
    SafetensorsFile fa(tmp / "a" + "/model.safetensors"), fb(file_b);
    for (int e = 0; e < E; ++e) {
      const TensorView va = fa.view(up_name(e)), vb = fb.view(up_name(e));
      for (int64_t i = 0; i < va.numel(); ++i) {
        const double a = va.at(i), b = vb.at(i);
        max_abs = std::max(max_abs, std::fabs(b - a));
        d2 += (b - a) * (b - a);
        a2 += a * a;
        b2 += b * b;
        ab += a * b;
      }
    }
  }
  REQUIRE(max_abs > 0);

  std::string text;
  REQUIRE(run_tool("diff " + tmp / "a" + " " + tmp / "b" + " --outputs --tokens 16 --json",
                   &text) == 0);
  INFO(text);
  const auto j = nlohmann::json::parse(text);
  REQUIRE(j["layers"].size() == 2u);
  for (const auto& l : j["layers"]) {
    const int layer = l["layer"];
    for (const char* w : {"router", "gate", "up", "down"}) {
      INFO("layer " << layer << " " << w);
      const auto& m = l["weights"][w];
      if (layer == L && std::string(w) == "up") {
        CHECK(m["max_abs"].get<double>() == Approx(max_abs).epsilon(1e-12));
        CHECK(m["rel_l2"].get<double>() == Approx(std::sqrt(d2 / a2)).epsilon(1e-9));
        CHECK(m["cosine"].get<double>() ==
              Approx(ab / (std::sqrt(a2) * std::sqrt(b2))).epsilon(1e-12));
        CHECK(m["cosine"].get<double>() < 1.0);
      } else {
        CHECK(m["max_abs"].get<double>() == 0.0);
        CHECK(m["rel_l2"].get<double>() == 0.0);
      }
    }
    // outputs move only where the weights did; up_proj does not touch the routing
    const double out_rel = l["output"]["rel_l2"];
    CHECK(l["routing_agreement"].get<double>() == 1.0);
    if (layer == L) {
      CHECK(out_rel > 1e-5);
      CHECK(out_rel < 1e-2);
    } else {
      CHECK(out_rel == 0.0);
    }
  }
  // the table names the projection and the layer
  REQUIRE(run_tool("diff " + tmp / "a" + " " + tmp / "b", &text) == 0);
  CHECK(text.find("    1  up ") != std::string::npos);
}
