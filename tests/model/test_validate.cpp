// validate(): clean synthetic checkpoints of every family pass (with --scan-values too), and each
// planted problem is found, named by tensor, and nothing else is reported. The NaN/Inf scanner
// is checked against the dtype table's independent decode on random data of every float type.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors_writer.h"
#include "model/synthetic.h"
#include "model/validate.h"
#include "model/value_scan.h"
#include "support/temp_dir.h"

using namespace moe;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

uint64_t fresh_seed() {
  static const uint64_t seed = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  return seed;
}

SyntheticSpec small_spec(Family f) {
  SyntheticSpec s;
  s.family = f;
  s.num_layers = 3;
  s.hidden_size = 24;
  s.moe_intermediate_size = 20;
  s.num_experts = 6;
  s.top_k = 2;
  s.seed = fresh_seed();
  return s;
}

std::vector<OwnedTensor> load_all(const std::string& dir) {
  Checkpoint ck = Checkpoint::open(dir);
  std::vector<OwnedTensor> out;
  for (const auto& n : ck.names()) {
    TensorView v = ck.view(n);
    out.push_back({n, v.dtype, v.shape, std::vector<uint8_t>(v.data, v.data + v.nbytes)});
  }
  return out;
}

// Rewrites the checkpoint's tensors as one model.safetensors (after `edit`).
template <typename F>
void edit_tensors(const std::string& dir, F&& edit) {
  auto tensors = load_all(dir);
  edit(tensors);
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors" || e.path().filename() == "model.safetensors.index.json")
      fs::remove(e.path());
  write_safetensors(dir + "/model.safetensors", tensors);
}

OwnedTensor& find(std::vector<OwnedTensor>& ts, const std::string& name) {
  for (auto& t : ts)
    if (t.name == name) return t;
  FAIL("no tensor " << name);
  throw std::logic_error("unreachable");
}

void erase(std::vector<OwnedTensor>& ts, const std::string& name) {
  auto before = ts.size();
  ts.erase(std::remove_if(ts.begin(), ts.end(), [&](const OwnedTensor& t) { return t.name == name; }),
           ts.end());
  REQUIRE(ts.size() + 1 == before);
}

template <typename F>
void edit_config(const std::string& dir, F&& edit) {
  json c = json::parse(test::read_text(dir + "/config.json"));
  edit(c);
  test::write_text(dir + "/config.json", c.dump(2));
}

ValidateReport run(const std::string& dir, bool scan = false) {
  Checkpoint ck = Checkpoint::open(dir);
  ValidateOptions o;
  o.scan_values = scan;
  o.threads = 2;
  return validate(ck, o);
}

// Exactly the problems whose tensor is `tensor` and whose text contains `text`, and no others.
void expect_only(const ValidateReport& r, const std::string& tensor, const std::string& text) {
  CAPTURE(report_to_json(r).dump(1));
  REQUIRE_FALSE(r.ok());
  for (const auto& p : r.problems) {
    CHECK(p.tensor == tensor);
    CHECK_THAT(p.text, Catch::Contains(text));
  }
}

}  // namespace

TEST_CASE("clean checkpoints of every family validate, values scanned", "[model][validate]") {
  for (int f = 0; f < static_cast<int>(Family::kCount); ++f) {
    SyntheticSpec s = small_spec(static_cast<Family>(f));
    s.num_shards = 1 + f % 2;
    CAPTURE(family_name(s.family), s.seed);
    test::TempDir dir;
    write_synthetic_checkpoint(dir.path(), s);
    ValidateReport r = run(dir.path(), true);
    CAPTURE(report_to_json(r).dump(1));
    CHECK(r.ok());
    CHECK(r.scanned);
    CHECK(r.scanned_tensors > 0);
    CHECK(r.scanned_bytes > 0);
    CHECK(r.layers.size() == r.profile.moe_layers.size());
    for (const auto& l : r.layers) {
      CHECK(l.experts_present == 6);
      CHECK(l.dtypes == std::vector<std::string>{"BF16"});
      CHECK(l.problems == 0);
    }
    json j = report_to_json(r);
    CHECK(j["ok"] == true);
    CHECK(j["problems"].empty());
  }
}

TEST_CASE("validate finds each planted problem", "[model][validate]") {
  test::TempDir dir;
  SyntheticSpec s = small_spec(Family::Qwen2Moe);
  const std::string L1 = "model.layers.1.mlp.";
  auto fresh = [&] {
    fs::remove_all(dir.path() + "/ck");
    write_synthetic_checkpoint(dir.path() + "/ck", s);
    return dir.path() + "/ck";
  };
  CAPTURE(s.seed);
  SECTION("missing expert") {
    auto d = fresh();
    edit_tensors(d, [&](auto& ts) { erase(ts, L1 + "experts.3.up_proj.weight"); });
    auto r = run(d);
    expect_only(r, L1 + "experts.3.up_proj.weight", "not in the checkpoint");
    CHECK(r.problems.size() == 1);
    CHECK(r.problems[0].layer == 1);
    CHECK(r.layers[1].experts_present == 5);
  }
  SECTION("wrong shape") {
    auto d = fresh();
    edit_tensors(d, [&](auto& ts) {
      auto& t = find(ts, L1 + "experts.2.down_proj.weight");
      t.shape = {20, 24};  // transposed
    });
    auto r = run(d);
    expect_only(r, L1 + "experts.2.down_proj.weight", "shape [20, 24], expected [24, 20]");
    CHECK(r.problems.size() == 1);
  }
  SECTION("wrong dtype") {
    auto d = fresh();
    edit_tensors(d, [&](auto& ts) { find(ts, "model.layers.0.mlp.experts.5.gate_proj.weight").dtype = DType::F16; });
    auto r = run(d);
    expect_only(r, "model.layers.0.mlp.experts.5.gate_proj.weight", "dtype F16 differs");
    CHECK(r.problems.size() == 1);
  }
  SECTION("missing router and shared expert gate") {
    auto d = fresh();
    edit_tensors(d, [&](auto& ts) {
      erase(ts, L1 + "gate.weight");
      erase(ts, "model.layers.2.mlp.shared_expert_gate.weight");
    });
    auto r = run(d);
    REQUIRE(r.problems.size() == 2);
    CHECK(r.problems[0].tensor == L1 + "gate.weight");
    CHECK(r.problems[1].tensor == "model.layers.2.mlp.shared_expert_gate.weight");
    CHECK(r.problems[1].layer == 2);
  }
  SECTION("config mismatch: fewer experts than the tensors hold") {
    auto d = fresh();
    edit_config(d, [](json& c) { c["num_experts"] = 5; });
    auto r = run(d);
    CAPTURE(report_to_json(r).dump(1));
    // every layer: the router is [6, H] and an expert 5 exists past the end
    REQUIRE(r.problems.size() == 2 * 3);
    CHECK(r.problems[0].tensor == "model.layers.0.mlp.gate.weight");
    CHECK_THAT(r.problems[0].text, Catch::Contains("shape [6, 24], expected [5, 24]"));
    CHECK(r.problems[1].tensor == "model.layers.0.mlp.experts.5.gate_proj.weight");
    CHECK_THAT(r.problems[1].text, Catch::Contains("config.json says 5 experts"));
  }
  SECTION("config mismatch: expert width") {
    auto d = fresh();
    edit_config(d, [](json& c) { c["moe_intermediate_size"] = 16; });
    auto r = run(d);
    CHECK(r.problems.size() == 3 * 6 * 3);  // every expert weight of every layer
    for (const auto& p : r.problems) CHECK_THAT(p.text, Catch::Contains("ShapeMismatch"));
  }
  SECTION("config mismatch: top_k, MoE-layer rule, shared width") {
    auto d = fresh();
    edit_config(d, [](json& c) {
      c["num_experts_per_tok"] = 7;
      c["mlp_only_layers"] = {2};
      c["shared_expert_intermediate_size"] = 0;
    });
    auto r = run(d);
    CAPTURE(report_to_json(r).dump(1));
    REQUIRE(r.problems.size() == 4);
    CHECK_THAT(r.problems[0].text, Catch::Contains("top_k 7 exceeds the 6 experts"));
    CHECK(r.problems[1].tensor == "model.layers.0.mlp.shared_expert.gate_proj.weight");
    CHECK_THAT(r.problems[1].text, Catch::Contains("declares none"));
    CHECK(r.problems[2].tensor == "model.layers.1.mlp.shared_expert.gate_proj.weight");
    CHECK(r.problems[3].tensor == "model.layers.2.mlp.gate.weight");
    CHECK_THAT(r.problems[3].text, Catch::Contains("dense"));
  }
  SECTION("NaN and Inf with --scan-values") {
    auto d = fresh();
    const std::string t = L1 + "experts.4.down_proj.weight";  // [24, 20] BF16
    edit_tensors(d, [&](auto& ts) {
      auto& x = find(ts, t);
      const uint16_t nan = 0x7fc1, inf = 0xff80;
      std::memcpy(x.bytes.data() + 2 * (7 * 20 + 13), &nan, 2);
      std::memcpy(x.bytes.data() + 2 * (21 * 20 + 2), &inf, 2);
      std::memcpy(x.bytes.data() + 2 * (22 * 20 + 0), &nan, 2);
    });
    CHECK(run(d, false).ok());  // without the scan nothing is wrong
    auto r = run(d, true);
    expect_only(r, t, "2 NaN and 1 Inf among 480 values, first at [7, 13]");
    REQUIRE(r.nonfinite.size() == 1);
    CHECK(r.nonfinite[0].first == 7 * 20 + 13);
    CHECK(r.problems[0].layer == 1);
  }
  SECTION("no config.json is unusable input") {
    auto d = fresh();
    fs::remove(d + "/config.json");
    Checkpoint ck = Checkpoint::open(d);
    try {
      validate(ck, {});
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::InvalidConfig);
      CHECK_THAT(e.what(), Catch::Contains("config.json not found"));
    }
  }
}

TEST_CASE("planted problems in fused layouts", "[model][validate]") {
  SECTION("gpt-oss: wrong gate_up_proj shape, missing bias") {
    test::TempDir dir;
    write_synthetic_checkpoint(dir.path(), small_spec(Family::GptOss));
    edit_tensors(dir.path(), [](auto& ts) {
      find(ts, "model.layers.2.mlp.experts.gate_up_proj").shape = {6, 40, 24};
      erase(ts, "model.layers.0.mlp.experts.down_proj_bias");
    });
    auto r = run(dir.path());
    CAPTURE(report_to_json(r).dump(1));
    REQUIRE(r.problems.size() == 2);  // once per tensor, not once per expert
    CHECK(r.problems[0].tensor == "model.layers.0.mlp.experts.down_proj_bias");
    CHECK(r.problems[1].tensor == "model.layers.2.mlp.experts.gate_up_proj");
    CHECK_THAT(r.problems[1].text, Catch::Contains("expected [6, 24, 40]"));
    CHECK(r.layers[2].experts_present == 0);
  }
  SECTION("llama4 multimodal: missing down_proj; granite: wrong dtype") {
    test::TempDir dir;
    SyntheticSpec s = small_spec(Family::Llama4);
    s.multimodal = true;
    write_synthetic_checkpoint(dir / "l4", s);
    edit_tensors(dir / "l4", [](auto& ts) { erase(ts, "language_model.model.layers.1.feed_forward.experts.down_proj"); });
    expect_only(run(dir / "l4"), "language_model.model.layers.1.feed_forward.experts.down_proj",
                "not in the checkpoint");
    write_synthetic_checkpoint(dir / "gr", small_spec(Family::GraniteMoe));
    edit_tensors(dir / "gr", [](auto& ts) {
      auto& t = find(ts, "model.layers.0.block_sparse_moe.input_linear.weight");
      t.dtype = DType::F32;
      t.shape[1] /= 2;  // same bytes, half the elements of twice the size
    });
    auto r = run(dir / "gr");
    CAPTURE(report_to_json(r).dump(1));
    REQUIRE(r.problems.size() == 1);
    CHECK_THAT(r.problems[0].text, Catch::Contains("ShapeMismatch"));
  }
  SECTION("deepseek_v3: missing correction bias, n_group not dividing E") {
    test::TempDir dir;
    write_synthetic_checkpoint(dir.path(), small_spec(Family::DeepseekV3));
    edit_tensors(dir.path(), [](auto& ts) { erase(ts, "model.layers.2.mlp.gate.e_score_correction_bias"); });
    edit_config(dir.path(), [](json& c) { c["n_group"] = 4; });
    auto r = run(dir.path());
    CAPTURE(report_to_json(r).dump(1));
    REQUIRE(r.problems.size() == 2);
    CHECK_THAT(r.problems[0].text, Catch::Contains("n_group 4 does not divide the 6 experts"));
    CHECK(r.problems[1].tensor == "model.layers.2.mlp.gate.e_score_correction_bias");
  }
}

TEST_CASE("NaN/Inf bit tests agree with the dtype table's decode on every float type",
          "[model][scan]") {
  std::mt19937_64 rng(fresh_seed());
  CAPTURE(fresh_seed());
  const DType types[] = {DType::BF16, DType::F16, DType::F32, DType::F64, DType::F8_E4M3,
                         DType::F8_E5M2, DType::F8_E4M3FNUZ, DType::F8_E5M2FNUZ, DType::F8_E8M0};
  for (DType t : types) {
    CAPTURE(dtype_name(t));
    REQUIRE(has_nonfinite_encodings(t));
    const int eb = dtype_bits(t) / 8;
    for (int trial = 0; trial < 20; ++trial) {
      // Odd lengths and offsets: tails, heads and unaligned starts all exercised. Elements are
      // random bytes, redrawn until the table's decode says finite, except about one in 64
      // which is redrawn until it is NaN or Inf.
      const int64_t n = 1 + static_cast<int64_t>(rng() % 3000);
      const size_t offset = rng() % 8;
      std::vector<uint8_t> buf(offset + n * eb);
      for (int64_t i = 0; i < n; ++i) {
        uint8_t* e = buf.data() + offset + i * eb;
        const bool special = rng() % 64 == 0;
        for (;;) {
          for (int k = 0; k < eb; ++k) e[k] = static_cast<uint8_t>(rng());
          if (std::isfinite(dtype_traits(t).decode(e, 0)) != special) break;
        }
      }
      uint64_t nan = 0, inf = 0;
      int64_t first = -1;
      for (int64_t i = 0; i < n; ++i) {
        double v = dtype_traits(t).decode(buf.data() + offset, i);
        if (std::isnan(v)) ++nan;
        if (std::isinf(v)) ++inf;
        if ((std::isnan(v) || std::isinf(v)) && first < 0) first = i;
      }
      ScanCounts c = scan_nonfinite(buf.data() + offset, t, n);
      CHECK(c.nan == nan);
      CHECK(c.inf == inf);
      CHECK(c.first == first);
    }
  }
  CHECK_FALSE(has_nonfinite_encodings(DType::I32));
  CHECK_FALSE(has_nonfinite_encodings(DType::F4));
  CHECK(index_str({4, 5, 6}, 2 * 30 + 3 * 6 + 5) == "[2, 3, 5]");
}

TEST_CASE("scan_tensors splits into chunks and merges counts and first locations", "[model][scan]") {
  std::mt19937_64 rng(fresh_seed());
  std::vector<uint16_t> a(100003), b(5000);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& x : a) x = f32_to_bf16(nd(rng));
  for (auto& x : b) x = f32_to_bf16(nd(rng));
  a[99999] = 0x7fc0;
  a[50001] = 0x7f80;
  a[70000] = 0xffc0;
  // The same two tensors in memory and in a file at odd offsets (pread path).
  test::TempDir dir;
  const std::string path = dir / "raw.bin";
  std::vector<uint8_t> file(3);
  file.insert(file.end(), reinterpret_cast<uint8_t*>(b.data()), reinterpret_cast<uint8_t*>(b.data() + b.size()));
  const uint64_t a_at = file.size();
  file.insert(file.end(), reinterpret_cast<uint8_t*>(a.data()), reinterpret_cast<uint8_t*>(a.data() + a.size()));
  test::write_text(path, std::string(file.begin(), file.end()));
  std::vector<ScanSource> mem = {
      {"a", DType::BF16, {100003}, a.size() * 2, reinterpret_cast<const uint8_t*>(a.data()), "", 0},
      {"b", DType::BF16, {50, 100}, b.size() * 2, reinterpret_cast<const uint8_t*>(b.data()), "", 0},
  };
  std::vector<ScanSource> disk = {
      {"a", DType::BF16, {100003}, a.size() * 2, nullptr, path, a_at},
      {"b", DType::BF16, {50, 100}, b.size() * 2, nullptr, path, 3},
  };
  for (const auto* sources : {&mem, &disk})
  for (uint64_t chunk : {64ull, 1000ull, 1ull << 20}) {
    auto r = scan_tensors(*sources, 3, nullptr, chunk);
    REQUIRE(r.size() == 2);
    CHECK(r[0].nan == 2);
    CHECK(r[0].inf == 1);
    CHECK(r[0].first == 50001);
    CHECK(r[1].nan + r[1].inf == 0);
    CHECK(r[1].first == -1);
  }
  disk[0].nbytes += 2;  // reads past the end of the file
  disk[0].shape = {100004};
  CHECK_THROWS_AS(scan_tensors(disk, 1, nullptr), Error);
}

TEST_CASE("quantized checkpoints: block FP8 scales and presence-only packed formats",
          "[model][validate][quant]") {
  SyntheticSpec s = small_spec(Family::DeepseekV3);
  s.num_layers = 2;
  auto is_expert_weight = [](const std::string& n) {
    return n.find(".experts.") != std::string::npos && n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0;
  };
  SECTION("fp8 block: F8_E4M3 weights with weight_scale_inv; NaN found by the scan") {
    test::TempDir dir;
    write_synthetic_checkpoint(dir.path(), s);
    edit_tensors(dir.path(), [&](auto& ts) {
      std::vector<OwnedTensor> scales;
      for (auto& t : ts) {
        if (!is_expert_weight(t.name)) continue;
        t.dtype = DType::F8_E4M3;
        t.bytes.resize(t.bytes.size() / 2);
        for (auto& b : t.bytes) b &= 0xbf;  // finite e4m3 codes
        std::vector<uint8_t> one(4);
        const float f = 0.5f;
        std::memcpy(one.data(), &f, 4);
        scales.push_back({t.name + "_scale_inv", DType::F32, {1, 1}, one});
      }
      ts.insert(ts.end(), scales.begin(), scales.end());
    });
    edit_config(dir.path(), [](json& c) {
      c["quantization_config"] = {{"quant_method", "fp8"}, {"weight_block_size", {16, 16}},
                                  {"fmt", "e4m3"}, {"activation_scheme", "dynamic"}};
    });
    // [20, 24] in 16 x 16 blocks needs [2, 2] scales: every scale is [1, 1], so each is reported.
    auto r = run(dir.path());
    CHECK(r.problems.size() == 1 * 6 * 3);
    for (const auto& p : r.problems) CHECK_THAT(p.text, Catch::Contains("expected [2, 2] for 16x16 blocks"));
    edit_config(dir.path(), [](json& c) { c["quantization_config"]["weight_block_size"] = {128, 128}; });
    CHECK(run(dir.path(), true).ok());
    const std::string t = "model.layers.1.mlp.experts.2.up_proj.weight";
    edit_tensors(dir.path(), [&](auto& ts) {
      find(ts, t).bytes[5 * 24 + 7] = 0xff;  // e4m3fn NaN
      erase(ts, "model.layers.1.mlp.experts.4.down_proj.weight_scale_inv");
    });
    auto r2 = run(dir.path(), true);
    CAPTURE(report_to_json(r2).dump(1));
    REQUIRE(r2.problems.size() == 2);
    CHECK(r2.problems[0].tensor == "model.layers.1.mlp.experts.4.down_proj.weight_scale_inv");
    CHECK(r2.problems[1].tensor == t);
    CHECK_THAT(r2.problems[1].text, Catch::Contains("1 NaN and 0 Inf among 480 values, first at [5, 7]"));
  }
  SECTION("gptq: presence of each expert's tensors only") {
    test::TempDir dir;
    write_synthetic_checkpoint(dir.path(), s);
    edit_tensors(dir.path(), [&](auto& ts) {
      for (auto& t : ts)
        if (is_expert_weight(t.name)) t.name = t.name.substr(0, t.name.size() - 6) + "qweight";
      erase(ts, "model.layers.1.mlp.experts.0.down_proj.qweight");
    });
    edit_config(dir.path(), [](json& c) {
      c["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 128}};
    });
    auto r = run(dir.path());
    CAPTURE(report_to_json(r).dump(1));
    REQUIRE(r.problems.size() == 1);
    CHECK(r.problems[0].tensor == "model.layers.1.mlp.experts.0.down_proj.weight");
    CHECK_THAT(r.problems[0].text, Catch::Contains("no tensor model.layers.1.mlp.experts.0.down_proj.*"));
    REQUIRE(r.notes.size() == 1);
    CHECK_THAT(r.notes[0], Catch::Contains("presence checked"));
  }
}
