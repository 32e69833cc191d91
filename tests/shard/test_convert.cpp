// convert end to end on synthetic checkpoints of every family: reassembly bit for bit, pads,
// replicas, maps, determinism, the manifest, ShardSet::from_checkpoint, the checks, and every
// error case (with atomicity: a failed convert leaves nothing behind).
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <set>
#include <cstring>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "mapping/expert_mapping.h"
#include "shard/convert.h"
#include "shard/shard_check.h"
#include "shard/shard_set.h"
#include "shard/xxhash64.h"
#include "shard_fixtures.h"
#include "support/temp_dir.h"

using namespace moe;
using namespace moe::test;
namespace fs = std::filesystem;

namespace {

struct Case {
  int tp, ep, redundant;
  Placement placement;
  int64_t pad_hidden, pad_inter;
  W13Order order;
};

// A spread over T, P, R, placement, padding and w13 order; I = 10, H = 20 in the fixtures, so
// tp 3 / 4 need intermediate padding (tp 4: the last rank gets 1 row; with I = 9 none).
constexpr Case kCases[] = {
    {1, 1, 0, Placement::Linear, 0, 0, W13Order::GateUp},
    {2, 3, 2, Placement::RoundRobin, 0, 0, W13Order::UpGate},
    {3, 2, 1, Placement::Linear, 8, 4, W13Order::GateUp},
    {4, 4, 3, Placement::RoundRobin, 32, 1, W13Order::GateUp},
};

PlanOptions plan_of(const Case& c) {
  PlanOptions o;
  o.tp = c.tp;
  o.ep = c.ep;
  o.redundant_experts = c.redundant;
  o.placement = c.placement;
  o.pad_hidden_to = c.pad_hidden;
  o.pad_intermediate_to = c.pad_inter;
  o.w13_order = c.order;
  return o;
}

ConvertOptions quiet(const PlanOptions& p, int threads = 2) {
  ConvertOptions o;
  o.plan = p;
  o.threads = threads;
  o.quiet = true;
  return o;
}

ErrorCode code_of(const std::function<void()>& fn, std::string* what = nullptr) {
  try {
    fn();
  } catch (const Error& e) {
    if (what) *what = e.what();
    return e.code();
  }
  return ErrorCode::kCount;
}

// Nothing named OUT or OUT.tmp-* / OUT.old-* exists next to OUT.
bool no_trace(const std::string& out) {
  const fs::path p(out);
  for (const auto& e : fs::directory_iterator(p.parent_path()))
    if (e.path().filename().string().rfind(p.filename().string(), 0) == 0) return false;
  return true;
}

// Rewrites the first safetensors file of a checkpoint without `drop` (a missing tensor).
void drop_tensor(const std::string& ckpt_dir, const std::string& drop) {
  Checkpoint ck = Checkpoint::open(ckpt_dir);
  const std::string file = ck.file_of(drop);
  std::vector<OwnedTensor> keep;
  {
    SafetensorsFile f(file);
    for (const auto& t : f.header().tensors) {
      if (t.name == drop) continue;
      TensorView v = f.view(t.name);
      keep.push_back({t.name, t.dtype, t.shape, std::vector<uint8_t>(v.data, v.data + v.nbytes)});
    }
  }
  write_safetensors(file, keep);
}

void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& fn) {
  auto j = nlohmann::json::parse(read_text(dir + "/config.json"));
  fn(j);
  write_text(dir + "/config.json", j.dump(2));
}

}  // namespace

TEST_CASE("convert: every family x a spread of layouts reassembles bit for bit", "[shard][convert]") {
  TempDir tmp;
  uint64_t seed = 100;
  for (Family f : kAllFamilies) {
    const SyntheticSpec spec = small_spec(f, ++seed);
    const std::string ckpt = tmp / (std::string(family_name(f)) + "-ckpt");
    write_synthetic_checkpoint(ckpt, spec);
    int idx = 0;
    for (const Case& c : kCases) {
      INFO("family " << family_name(f) << " case " << idx << " tp=" << c.tp << " ep=" << c.ep
                     << " R=" << c.redundant);
      const std::string out = tmp / (std::string(family_name(f)) + "-out" + std::to_string(idx++));
      const PlanOptions po = plan_of(c);
      ConvertResult r = convert_checkpoint(ckpt, out, quiet(po));
      CHECK(r.manifest["family"] == family_name(f));
      CHECK(r.manifest["uneven_placement"] == ((6 + c.redundant) % c.ep != 0));
      const int n = check_shard_set_against_spec(out, spec, po);
      CHECK(n > 0);
      const CheckReport v = validate_shard_set(out);
      CHECK(v.problems == std::vector<std::string>{});
      const CheckReport s = compare_with_source(out, "", 2);
      CHECK(s.problems == std::vector<std::string>{});
      CHECK(s.stats["experts_compared"].get<int64_t>() > 0);
    }
  }
}

TEST_CASE("convert: fp16 and fp32 checkpoints, fused and multimodal layouts, reassemble bit for bit",
          "[shard][convert]") {
  TempDir tmp;
  uint64_t seed = 500;
  for (DType dt : {DType::F16, DType::F32})
    for (Family f : {Family::Mixtral, Family::DeepseekV3, Family::GraniteMoe, Family::Llama4,
                     Family::GptOss, Family::Qwen2Moe}) {
      SyntheticSpec spec = small_spec(f, ++seed);
      spec.dtype = dt;
      spec.multimodal = f == Family::Llama4 && dt == DType::F32;  // "language_model." names
      const std::string name = std::string(family_name(f)) + "-" + dtype_name(dt);
      write_synthetic_checkpoint(tmp / name, spec);
      for (const Case& c : {kCases[2], kCases[1]}) {
        INFO(name << " tp=" << c.tp << " ep=" << c.ep);
        const std::string out = tmp / (name + "-out" + std::to_string(c.tp));
        const PlanOptions po = plan_of(c);
        convert_checkpoint(tmp / name, out, quiet(po));
        CHECK(ShardSet::open(out).layer(0, ShardSet::open(out).profile().moe_layers[0]).w13.dtype == dt);
        CHECK(check_shard_set_against_spec(out, spec, po) > 0);
        CHECK(validate_shard_set(out).ok());
        CHECK(compare_with_source(out, "", 1).ok());
      }
    }
}

TEST_CASE("convert: wide TP column slices (read row by row) and padding reassemble bit for bit",
          "[shard][convert]") {
  TempDir tmp;
  for (Family f : {Family::Mixtral, Family::GptOss, Family::Llama4}) {
    // fp32, I = 3072 over tp 3: each w2 row slice is 4 KiB of a 12 KiB row.
    SyntheticSpec spec = small_spec(f, 77, /*hidden=*/12, /*inter=*/3072, /*experts=*/4);
    spec.dtype = DType::F32;
    spec.num_layers = 1;
    spec.shared_intermediate_size = f == Family::Llama4 ? 3072 : -1;
    const std::string ckpt = tmp / family_name(f);
    write_synthetic_checkpoint(ckpt, spec);
    for (int64_t pad : {0, 1000}) {
      INFO(family_name(f) << " pad " << pad);
      PlanOptions po;
      po.tp = 3;
      po.ep = 2;
      po.pad_hidden_to = pad ? 16 : 0;
      po.pad_intermediate_to = pad;
      const std::string out = ckpt + "-out" + std::to_string(pad);
      convert_checkpoint(ckpt, out, quiet(po));
      CHECK(check_shard_set_against_spec(out, spec, po) > 0);
      CHECK(compare_with_source(out, "", 2).ok());
    }
  }
}

TEST_CASE("convert: non-MoE tensors copied once, unchanged; --moe-only skips them",
          "[shard][convert]") {
  TempDir tmp;
  const SyntheticSpec spec = small_spec(Family::DeepseekV3, 5);
  write_synthetic_checkpoint(tmp / "ckpt", spec);
  Checkpoint ck = Checkpoint::open(tmp / "ckpt");
  const ModelProfile prof = profile_from_config(ck.config(), "config.json");
  ExpertMapping map(ck, prof);
  std::set<std::string> moe;
  for (int l : prof.moe_layers)
    for (auto& n : map.layer_tensor_names(l)) moe.insert(n);
  convert_checkpoint(tmp / "ckpt", tmp / "out", quiet(PlanOptions{}));
  SafetensorsFile nm(tmp / "out/non-moe.safetensors");
  size_t expected = 0;
  for (const auto& name : ck.names()) {
    if (moe.count(name)) {
      CHECK_FALSE(nm.has(name));
      continue;
    }
    ++expected;
    REQUIRE(nm.has(name));
    TensorView a = ck.view(name), b = nm.view(name);
    CHECK(a.dtype == b.dtype);
    CHECK(a.shape == b.shape);
    REQUIRE(a.nbytes == b.nbytes);
    CHECK(std::memcmp(a.data, b.data, a.nbytes) == 0);
  }
  CHECK(expected > 0);
  CHECK(nm.header().tensors.size() == expected);
  CHECK(read_text(tmp / "out/config.json") == read_text(tmp / "ckpt/config.json"));

  ConvertOptions o = quiet(PlanOptions{});
  o.moe_only = true;
  auto r = convert_checkpoint(tmp / "ckpt", tmp / "out2", o);
  CHECK_FALSE(fs::exists(tmp / "out2/non-moe.safetensors"));
  CHECK(r.manifest["non_moe"].is_null());
  CHECK(validate_shard_set(tmp / "out2").ok());
}

TEST_CASE("convert: same input and options give byte-identical output, any thread count, with or without fsync",
          "[shard][convert]") {
  TempDir tmp;
  SyntheticSpec spec = small_spec(Family::GptOss, 9);
  spec.num_shards = 2;
  write_synthetic_checkpoint(tmp / "ckpt", spec);
  PlanOptions po = plan_of(kCases[2]);
  ConvertOptions a = quiet(po, 1), b = quiet(po, 4), c = quiet(po, 2);
  c.durable = false;  // --no-fsync changes when bytes reach the disk, not which
  convert_checkpoint(tmp / "ckpt", tmp / "a", a);
  convert_checkpoint(tmp / "ckpt", tmp / "b", b);
  convert_checkpoint(tmp / "ckpt", tmp / "c", c);
  auto fa = read_all_files(tmp / "a"), fb = read_all_files(tmp / "b");
  CHECK(read_all_files(tmp / "c") == fa);
  REQUIRE(fa.size() == fb.size());
  CHECK(fa.size() == 2u * 3u + 3u);  // 6 ranks + non-moe + manifest + config
  for (size_t i = 0; i < fa.size(); ++i) {
    CHECK(fa[i].first == fb[i].first);
    CHECK(fa[i].second == fb[i].second);
  }
  // The manifest's checksums are the files' XXH64 (computed while writing).
  auto m = nlohmann::json::parse(read_text(tmp / "a/manifest.json"));
  for (const auto& r : m["ranks"])
    CHECK(r["xxh64"] == xxh64_hex(xxh64_file(tmp / ("a/" + r["file"].get<std::string>()))));
  CHECK(m["non_moe"]["xxh64"] == xxh64_hex(xxh64_file(tmp / "a/non-moe.safetensors")));
  CHECK(m["ranks"][0]["bytes"].get<uint64_t>() == fs::file_size(tmp / "a/rank-00000-of-00006.safetensors"));
}

TEST_CASE("convert: manifest and rank metadata follow docs/shard-format.md", "[shard][convert]") {
  TempDir tmp;
  write_synthetic_checkpoint(tmp / "ckpt", small_spec(Family::Qwen2Moe, 3));
  PlanOptions po = plan_of(kCases[1]);
  po.layers = {1, 2};
  convert_checkpoint(tmp / "ckpt", tmp / "out", quiet(po));
  auto m = nlohmann::json::parse(read_text(tmp / "out/manifest.json"));
  CHECK(m["format"] == "moe-tool-shards");
  CHECK(m["version"] == 1);
  CHECK(m["tp"] == 2);
  CHECK(m["ep"] == 3);
  CHECK(m["world_size"] == 6);
  CHECK(m["redundant_experts"] == 2);
  CHECK(m["num_physical_experts"] == 8);
  CHECK(m["placement"] == "round_robin");
  CHECK(m["w13_order"] == "up-gate");
  CHECK(m["moe_layers"] == nlohmann::json::array({1, 2}));
  CHECK(m["physical_to_logical"]["1"] == nlohmann::json::array({0, 1, 2, 3, 4, 5, 0, 1}));
  CHECK(m["encodings"]["w13_weight"] == "dense");
  CHECK(m["padding"]["pad_hidden_to"] == 0);
  CHECK(m["padding"]["pad_intermediate_to"] == 0);
  CHECK(m["rank_order"] == "rank = ep_rank * tp + tp_rank");
  CHECK(m["source"]["files"][0]["bytes"].get<uint64_t>() > 0);
  CHECK(m["source"]["path"].get<std::string>().front() == '/');
  // round_robin over 3 EP ranks of 8 physical experts: EP rank 2 holds 2 and 5.
  CHECK(m["ranks"][5]["local_to_physical"] == nlohmann::json::array({2, 5}));
  CHECK(m["ranks"][5]["expert_map"] == nlohmann::json::array({-1, -1, 0, -1, -1, 1, -1, -1}));
  CHECK(m["encodings"].contains("shared_expert_gate"));
  CHECK_FALSE(m["encodings"].contains("w13_bias"));
  CHECK(m["source"]["files"].size() == 1u);
  CHECK(m["ranks"][5]["file"] == "rank-00005-of-00006.safetensors");
  CHECK(m["ranks"][5]["tp_rank"] == 1);
  CHECK(m["ranks"][5]["ep_rank"] == 2);
  SafetensorsFile f(tmp / "out/rank-00005-of-00006.safetensors");
  CHECK(f.header().metadata.at("format") == "moe-tool-shard");
  CHECK(f.header().metadata.at("tp_rank") == "1");
  CHECK(f.header().metadata.at("ep_rank") == "2");
  CHECK(f.has("layers.1.w13_weight"));
  CHECK_FALSE(f.has("layers.0.w13_weight"));  // --layers 1,2
  const ShardSet set = ShardSet::open(tmp / "out");
  CHECK(set.profile().moe_layers == std::vector<int>{1, 2});
  CHECK_THROWS_AS(set.layer(0, 0), Error);
  // inspect lists every file
  auto info = inspect_shard_set(tmp / "out");
  CHECK(info["files"].size() == 7u);
  CHECK(info["placement_summary"].get<std::string>().find("uneven") != std::string::npos);
}

TEST_CASE("convert: an expert map file drives physical -> logical", "[shard][convert]") {
  TempDir tmp;
  const SyntheticSpec spec = small_spec(Family::Mixtral, 11);
  write_synthetic_checkpoint(tmp / "ckpt", spec);
  write_text(tmp / "map.json", R"({"physical_to_logical": [5, 4, 3, 2, 1, 0, 5, 5]})");
  PlanOptions po;
  po.ep = 3;
  po.expert_map = read_expert_map_file(tmp / "map.json");
  po.expert_map_file = tmp / "map.json";
  convert_checkpoint(tmp / "ckpt", tmp / "out", quiet(po));
  po.redundant_experts = 2;  // implied by the map; the checker needs it
  CHECK(check_shard_set_against_spec(tmp / "out", spec, po) > 0);
  CHECK(validate_shard_set(tmp / "out").ok());
}

TEST_CASE("ShardSet::from_checkpoint equals convert --tp 1 --ep 1", "[shard][convert]") {
  TempDir tmp;
  for (Family f : {Family::GptOss, Family::Llama4, Family::Ernie45Moe}) {
    const std::string ckpt = tmp / family_name(f);
    write_synthetic_checkpoint(ckpt, small_spec(f, 21));
    const std::string out = ckpt + "-out";
    convert_checkpoint(ckpt, out, quiet(PlanOptions{}));
    const ShardSet a = ShardSet::open(out, true), b = ShardSet::from_checkpoint(ckpt);
    CHECK(b.ranks().size() == 1u);
    CHECK(b.geometry().hidden_size_padded == a.geometry().hidden_size_padded);
    for (int layer : a.profile().moe_layers) {
      const RankLayer &x = a.layer(0, layer), &y = b.layer(0, layer);
      auto same = [](const TensorView& p, const TensorView& q) {
        return p.shape == q.shape && p.dtype == q.dtype && p.nbytes == q.nbytes &&
               (p.nbytes == 0 || std::memcmp(p.data, q.data, p.nbytes) == 0);
      };
      CHECK(same(x.w13, y.w13));
      CHECK(same(x.w2, y.w2));
      CHECK(same(x.w13_bias, y.w13_bias));
      CHECK(same(x.w2_bias, y.w2_bias));
      CHECK(same(x.router_weight, y.router_weight));
      CHECK(same(x.router_bias, y.router_bias));
      CHECK(same(x.correction_bias, y.correction_bias));
      CHECK(same(x.shared_w13, y.shared_w13));
      CHECK(same(x.shared_w2, y.shared_w2));
      CHECK(x.expert_map == y.expert_map);
      CHECK(x.local_to_physical == y.local_to_physical);
    }
  }
}

TEST_CASE("convert errors: one line, exit-2 codes, and nothing left behind", "[shard][convert]") {
  TempDir tmp;
  const SyntheticSpec spec = small_spec(Family::Qwen3Moe, 31);
  const std::string ckpt = tmp / "ckpt";
  write_synthetic_checkpoint(ckpt, spec);
  const std::string out = tmp / "out";
  std::string what;

  SECTION("tp does not divide I without padding") {
    PlanOptions po;
    po.tp = 3;
    CHECK(code_of([&] { convert_checkpoint(ckpt, out, quiet(po)); }, &what) == ErrorCode::InvalidPlan);
    CHECK(what.find("--tp 3 does not divide") != std::string::npos);
  }
  SECTION("ep larger than the physical experts") {
    PlanOptions po;
    po.ep = 7;
    CHECK(code_of([&] { convert_checkpoint(ckpt, out, quiet(po)); }, &what) == ErrorCode::InvalidPlan);
    po.redundant_experts = 1;
    CHECK(code_of([&] { convert_checkpoint(ckpt, out, quiet(po)); }) == ErrorCode::kCount);
    CHECK(validate_shard_set(out).ok());
    fs::remove_all(out);
  }
  SECTION("missing expert") {
    drop_tensor(ckpt, "model.layers.1.mlp.experts.4.up_proj.weight");
    CHECK(code_of([&] { convert_checkpoint(ckpt, out, quiet(PlanOptions{})); }, &what) ==
          ErrorCode::MissingTensor);
    CHECK(what.find("model.layers.1.mlp.experts.4.up_proj.weight") != std::string::npos);
  }
  SECTION("shape mismatch against config.json") {
    edit_config(ckpt, [](nlohmann::json& j) { j["moe_intermediate_size"] = 12; });
    CHECK(code_of([&] { convert_checkpoint(ckpt, out, quiet(PlanOptions{})); }, &what) ==
          ErrorCode::ShapeMismatch);
    CHECK(what.find("experts.0.gate_proj.weight") != std::string::npos);
  }
  SECTION("quantized input is not supported yet") {
    edit_config(ckpt, [](nlohmann::json& j) {
      j["quantization_config"] = {{"quant_method", "fp8"}, {"fmt", "e4m3"},
                                  {"activation_scheme", "dynamic"},
                                  {"weight_block_size", {128, 128}}};
    });
    CHECK(code_of([&] { convert_checkpoint(ckpt, out, quiet(PlanOptions{})); }, &what) ==
          ErrorCode::UnsupportedQuantization);
    CHECK(what.find("not supported yet") != std::string::npos);
  }
  SECTION("existing output without --force; --force replaces a shard set") {
    fs::create_directories(out);
    write_text(out + "/keep.txt", "user data");
    CHECK(code_of([&] { convert_checkpoint(ckpt, out, quiet(PlanOptions{})); }) == ErrorCode::OutputExists);
    ConvertOptions force = quiet(PlanOptions{});
    force.force = true;
    // Not a shard set: even --force refuses to delete it.
    CHECK(code_of([&] { convert_checkpoint(ckpt, out, force); }) == ErrorCode::OutputExists);
    CHECK(read_text(out + "/keep.txt") == "user data");
    fs::remove_all(out);
    convert_checkpoint(ckpt, out, quiet(PlanOptions{}));
    PlanOptions two;
    two.ep = 2;
    force.plan = two;
    convert_checkpoint(ckpt, out, force);
    CHECK(ShardSet::open(out).geometry().ep == 2);
    CHECK_FALSE(fs::exists(out + "/rank-00000-of-00001.safetensors"));
    fs::remove_all(out);
  }
  SECTION("write error (file size limit -> EFBIG) fails cleanly, a re-run succeeds") {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit old {};
    ::getrlimit(RLIMIT_FSIZE, &old);
    struct rlimit small = old;
    small.rlim_cur = 4096;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    const ErrorCode c = code_of([&] { convert_checkpoint(ckpt, out, quiet(PlanOptions{})); }, &what);
    ::setrlimit(RLIMIT_FSIZE, &old);
    CHECK(c == ErrorCode::Io);
    CHECK(what.find("rank-00000-of-00001.safetensors") != std::string::npos);
    CHECK(no_trace(out));
    convert_checkpoint(ckpt, out, quiet(PlanOptions{}));
    CHECK(validate_shard_set(out).ok());
    fs::remove_all(out);
  }
  CHECK(no_trace(out));
}

TEST_CASE("convert: a failure mid-way, after files were committed, leaves nothing; re-run works",
          "[shard][convert]") {
  TempDir tmp;
  SyntheticSpec spec = small_spec(Family::Qwen3Moe, 61);
  spec.vocab_size = 2048;  // non-moe.safetensors (embeddings) is far larger than a rank file
  spec.num_shards = 2;
  write_synthetic_checkpoint(tmp / "ckpt", spec);
  PlanOptions po;
  po.ep = 2;
  // Sizes from a good run: the limit lets both rank files through and stops non-moe, the last
  // file written.
  convert_checkpoint(tmp / "ckpt", tmp / "good", quiet(po, 1));
  const uint64_t rank_bytes = std::max(fs::file_size(tmp / "good/rank-00000-of-00002.safetensors"),
                                       fs::file_size(tmp / "good/rank-00001-of-00002.safetensors"));
  REQUIRE(fs::file_size(tmp / "good/non-moe.safetensors") > 2 * rank_bytes);
  const std::string out = tmp / "out";
  std::string what;

  SECTION("write error (EFBIG) in the last file") {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit old {};
    ::getrlimit(RLIMIT_FSIZE, &old);
    struct rlimit lim = old;
    lim.rlim_cur = rank_bytes + 4096;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lim) == 0);
    const ErrorCode c = code_of([&] { convert_checkpoint(tmp / "ckpt", out, quiet(po, 1)); }, &what);
    ::setrlimit(RLIMIT_FSIZE, &old);
    CHECK(c == ErrorCode::Io);
    CHECK(what.find("non-moe.safetensors") != std::string::npos);
    CHECK(what.find("File too large") != std::string::npos);  // errno, spelled out
  }
  SECTION("interrupted at the last chunk, once every rank file is committed") {
    // Count the stop polls of a full run (one per chunk, one before the manifest).
    int total = 0;
    ConvertOptions count = quiet(po, 1);
    count.should_stop = [&] { return ++total < 0; };
    convert_checkpoint(tmp / "ckpt", tmp / "count", count);
    REQUIRE(total > 3);
    // One worker takes chunks in file order and hashes each before taking the next, so at the
    // last chunk both rank files are complete and with the closer; wait until it has renamed
    // them to their final names inside OUT.tmp-*, then stop.
    int calls = 0;
    bool saw_committed = false;
    ConvertOptions o = quiet(po, 1);
    o.should_stop = [&] {
      if (++calls < total - 1) return false;
      for (int i = 0; i < 1000 && !saw_committed; ++i) {
        int committed = 0;
        for (const auto& e : fs::directory_iterator(tmp.path()))
          if (e.path().filename().string().rfind("out.tmp-", 0) == 0)
            for (const char* f : {"rank-00000-of-00002.safetensors", "rank-00001-of-00002.safetensors"})
              committed += fs::exists(e.path() / f);
        saw_committed = committed == 2;
        if (!saw_committed) ::usleep(10000);
      }
      return true;
    };
    CHECK(code_of([&] { convert_checkpoint(tmp / "ckpt", out, o); }, &what) == ErrorCode::Io);
    CHECK(what.find("interrupted") != std::string::npos);
    CHECK(saw_committed);
  }
  SECTION("a source file cut short while converting (an expert tensor ends early)") {
    const std::string bad = tmp / "bad";
    fs::copy(tmp / "ckpt", bad);
    const std::string second = bad + "/model-00002-of-00002.safetensors";
    int total = 0;
    ConvertOptions count = quiet(po, 1);
    count.should_stop = [&] { return ++total < 0; };
    convert_checkpoint(bad, tmp / "count", count);
    int calls = 0;
    ConvertOptions o = quiet(po, 1);
    o.should_stop = [&] {
      if (++calls == total / 2) fs::resize_file(second, fs::file_size(second) / 2);
      return false;
    };
    CHECK(code_of([&] { convert_checkpoint(bad, out, o); }, &what) == ErrorCode::Io);
    CHECK(what.find("model-00002-of-00002.safetensors") != std::string::npos);
    CHECK(what.find("before the data its header promised") != std::string::npos);
  }
  SECTION("a corrupt source file (truncated second shard)") {
    const std::string bad = tmp / "bad";
    fs::copy(tmp / "ckpt", bad);
    const std::string second = bad + "/model-00002-of-00002.safetensors";
    REQUIRE(fs::exists(second));
    fs::resize_file(second, fs::file_size(second) - 100);
    CHECK(code_of([&] { convert_checkpoint(bad, out, quiet(po, 1)); }, &what) != ErrorCode::kCount);
    CHECK(what.find("model-00002-of-00002.safetensors") != std::string::npos);
  }
  // Whatever failed: no OUT, no OUT.tmp-*, no manifest; the same command then succeeds and
  // gives the good run's bytes.
  CHECK(no_trace(out));
  convert_checkpoint(tmp / "ckpt", out, quiet(po, 1));
  CHECK(read_all_files(out) == read_all_files(tmp / "good"));
}

TEST_CASE("validate and --verify catch corrupted shards", "[shard][convert]") {
  TempDir tmp;
  write_synthetic_checkpoint(tmp / "ckpt", small_spec(Family::Olmoe, 41));
  PlanOptions po;
  po.ep = 2;
  ConvertOptions o = quiet(po);
  o.verify = true;
  ConvertResult r = convert_checkpoint(tmp / "ckpt", tmp / "out", o);
  CHECK(r.verified);
  CHECK(r.verify_problems.empty());
  // Flip one byte in the middle of rank 1's w13 data.
  const std::string f = tmp / "out/rank-00001-of-00002.safetensors";
  uint64_t off = 0;
  {
    SafetensorsFile sf(f);
    const auto& e = sf.entry("layers.0.w13_weight");
    off = sf.header().data_offset + e.begin + (e.end - e.begin) / 2;
  }
  {
    std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(static_cast<std::streamoff>(off));
    char c = 0;
    io.read(&c, 1);
    c ^= 0x5a;
    io.seekp(static_cast<std::streamoff>(off));
    io.write(&c, 1);
  }
  CheckReport v = validate_shard_set(tmp / "out");
  INFO(nlohmann::json(v.problems).dump(1));
  REQUIRE(v.problems.size() == 1u);
  CHECK(v.problems[0].find("xxh64") != std::string::npos);
  CheckReport s = compare_with_source(tmp / "out", "", 1);
  REQUIRE(s.problems.size() == 1u);
  CHECK(s.problems[0].find("w13 differs") != std::string::npos);
  CHECK(code_of([&] { ShardSet::open(tmp / "out", true); }) == ErrorCode::ChecksumMismatch);
}
