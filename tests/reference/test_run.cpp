// `run` end to end on synthetic checkpoints (lib/model/synthetic.h): the CPU backend against the
// float64 reference for every family, straight from a checkpoint and from shard sets of a spread
// of plans; faulty backends and corrupted shards must fail; dumps replay through --inputs; and
// `diff` reassembles shard sets exactly and refuses different models. The CLI cases run the
// built tool through $MOE_TOOL.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "model/synthetic.h"
#include "reference/diff.h"
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
