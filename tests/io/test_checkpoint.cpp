// Checkpoint::open: single files, directories of shards with and without
// model.safetensors.index.json (formats.md 1.4), config.json, and every index error.
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/io_fixtures.h"
#include "io/safetensors_writer.h"
#include "support/temp_dir.h"

using namespace moe;
using namespace moe::test;
namespace fs = std::filesystem;

namespace {

using Tensors = std::map<std::string, OwnedTensor>;

// Writes a shard of random tensors named `names`, in the HF per-expert layout (hf-layouts.md):
// [I, H] gate/up, [H, I] down, BF16. Adds them to `all`.
void write_shard(const std::string& path, const std::vector<std::string>& names, Tensors& all) {
  std::vector<OwnedTensor> ts;
  for (const auto& n : names) {
    const bool down = n.find("down_proj") != std::string::npos;
    Shape shape = down ? Shape{16, 8} : Shape{8, 16};
    ts.push_back({n, DType::BF16, shape, random_bytes(8 * 16 * 2)});
    all[n] = ts.back();
  }
  write_safetensors(path, ts, {{"format", "pt"}});
}

std::vector<std::string> expert_names(int layer, int expert) {
  const std::string p = "model.layers." + std::to_string(layer) + ".mlp.experts." +
                        std::to_string(expert) + ".";
  return {p + "gate_proj.weight", p + "up_proj.weight", p + "down_proj.weight"};
}

void write_index(const std::string& dir, const nlohmann::json& weight_map) {
  nlohmann::json idx = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
  write_text(dir + "/model.safetensors.index.json", idx.dump(2));
}

void check_all(const Checkpoint& ck, const Tensors& all) {
  REQUIRE(ck.names().size() == all.size());
  uint64_t bytes = 0;
  for (const auto& [name, t] : all) {
    INFO(name);
    REQUIRE(ck.has(name));
    const TensorView v = ck.view(name);
    CHECK(v.dtype == t.dtype);
    CHECK(v.shape == t.shape);
    REQUIRE(v.nbytes == t.bytes.size());
    CHECK(std::memcmp(v.data, t.bytes.data(), t.bytes.size()) == 0);
    bytes += t.bytes.size();
  }
  CHECK(ck.total_tensor_bytes() == bytes);
}

Error open_error(const std::string& path, ErrorCode code) {
  auto err = catch_error([&] { Checkpoint::open(path); });
  REQUIRE(err);
  INFO(err->what());
  CHECK(error_code_name(err->code()) == std::string(error_code_name(code)));
  return *err;
}

bool mentions(const Error& e, const std::string& s) {
  return std::string(e.what()).find(s) != std::string::npos;
}

// The standard sharded fixture: 3 shards of 2 experts each plus a router, with an index.
struct Sharded {
  TempDir dir;
  Tensors all;
  nlohmann::json weight_map = nlohmann::json::object();
  Sharded() {
    for (int s = 0; s < 3; ++s) {
      const std::string file = "model-0000" + std::to_string(s + 1) + "-of-00003.safetensors";
      std::vector<std::string> names;
      for (int e = 2 * s; e < 2 * s + 2; ++e)
        for (auto& n : expert_names(0, e)) names.push_back(n);
      if (s == 2) names.push_back("model.layers.0.mlp.gate.weight");
      write_shard(dir / file, names, all);
      for (auto& n : names) weight_map[n] = file;
    }
    write_text(dir / "config.json", R"({"model_type": "qwen3_moe", "num_experts": 6})");
  }
};

}  // namespace

TEST_CASE("a single .safetensors file, with and without config.json beside it", "[io][checkpoint]") {
  CAPTURE(io_seed());
  TempDir dir;
  Tensors all;
  write_shard(dir / "model.safetensors", expert_names(0, 0), all);
  {
    Checkpoint ck = Checkpoint::open(dir / "model.safetensors");
    CHECK(ck.root() == dir.path());
    CHECK_FALSE(ck.has_config());
    CHECK(ck.config().is_object());
    CHECK(ck.config().empty());
    check_all(ck, all);
  }
  write_text(dir / "config.json", R"({"model_type": "mixtral", "num_local_experts": 8})");
  Checkpoint ck = Checkpoint::open(dir / "model.safetensors");
  CHECK(ck.has_config());
  CHECK(ck.config().at("num_local_experts") == 8);
  CHECK(ck.files().size() == 1);
  CHECK(ck.file_of(expert_names(0, 0)[0]) == dir / "model.safetensors");
  auto miss = catch_error([&] { ck.find("model.layers.9.mlp.gate.weight"); });
  REQUIRE(miss);
  CHECK(miss->code() == ErrorCode::MissingTensor);
  CHECK(miss->tensor() == "model.layers.9.mlp.gate.weight");
  auto miss_view = catch_error([&] { ck.view("nope"); });
  REQUIRE(miss_view);
  CHECK(miss_view->code() == ErrorCode::MissingTensor);
}

TEST_CASE("a directory with model.safetensors.index.json: the happy path", "[io][checkpoint]") {
  CAPTURE(io_seed());
  Sharded s;
  write_index(s.dir.path(), s.weight_map);
  write_text(s.dir / "stray.safetensors.bak", "not read");
  Checkpoint ck = Checkpoint::open(s.dir.path());
  CHECK(ck.root() == s.dir.path());
  CHECK(ck.has_config());
  CHECK(ck.config().at("model_type") == "qwen3_moe");
  CHECK(ck.files().size() == 3);
  check_all(ck, s.all);
  for (auto it = s.weight_map.begin(); it != s.weight_map.end(); ++it)
    CHECK(ck.file_of(it.key()) == s.dir / it.value().get<std::string>());
  const auto names = ck.names();
  CHECK(std::is_sorted(names.begin(), names.end()));
}

TEST_CASE("index errors are InvalidIndex naming the index file", "[io][checkpoint]") {
  CAPTURE(io_seed());
  Sharded s;
  const std::string index = s.dir / "model.safetensors.index.json";
  SECTION("a shard file named by the index is missing") {
    s.weight_map["model.layers.1.mlp.gate.weight"] = "model-00004-of-00003.safetensors";
    write_index(s.dir.path(), s.weight_map);
    Error e = open_error(s.dir.path(), ErrorCode::InvalidIndex);
    CHECK(e.file() == index);
    CHECK(mentions(e, "model-00004-of-00003.safetensors"));
  }
  SECTION("a tensor is not in the shard the index names") {
    const std::string moved = expert_names(0, 0)[1];
    s.weight_map[moved] = "model-00002-of-00003.safetensors";
    write_index(s.dir.path(), s.weight_map);
    Error e = open_error(s.dir.path(), ErrorCode::InvalidIndex);
    CHECK(e.file() == index);
    CHECK(e.tensor() == moved);
    CHECK(mentions(e, "model-00002-of-00003.safetensors"));
  }
  SECTION("a tensor of the index exists nowhere") {
    s.weight_map["lm_head.weight"] = "model-00001-of-00003.safetensors";
    write_index(s.dir.path(), s.weight_map);
    Error e = open_error(s.dir.path(), ErrorCode::InvalidIndex);
    CHECK(e.tensor() == "lm_head.weight");
  }
  SECTION("the index is not JSON") {
    write_text(index, "{\"weight_map\": {");
    Error e = open_error(s.dir.path(), ErrorCode::InvalidIndex);
    CHECK(e.file() == index);
  }
  SECTION("no weight_map") {
    write_text(index, R"({"metadata": {"total_size": 1}})");
    Error e = open_error(s.dir.path(), ErrorCode::InvalidIndex);
    CHECK(e.file() == index);
  }
  SECTION("weight_map value not a file name") {
    s.weight_map[expert_names(0, 0)[0]] = 3;
    write_index(s.dir.path(), s.weight_map);
    Error e = open_error(s.dir.path(), ErrorCode::InvalidIndex);
    CHECK(e.tensor() == expert_names(0, 0)[0]);
  }
  SECTION("empty weight_map") {
    write_index(s.dir.path(), nlohmann::json::object());
    open_error(s.dir.path(), ErrorCode::InvalidIndex);
  }
}

TEST_CASE("a tensor in two shards is DuplicateTensor naming both files", "[io][checkpoint]") {
  CAPTURE(io_seed());
  Sharded s;
  const std::string dup = expert_names(0, 0)[0];
  Tensors extra;
  write_shard(s.dir / "model-00003-of-00003.safetensors", {dup, "model.layers.0.mlp.gate.weight"},
              extra);
  for (auto& n : expert_names(0, 4)) s.weight_map.erase(n);
  for (auto& n : expert_names(0, 5)) s.weight_map.erase(n);
  SECTION("with an index") { write_index(s.dir.path(), s.weight_map); }
  SECTION("without an index") {}
  Error e = open_error(s.dir.path(), ErrorCode::DuplicateTensor);
  CHECK(e.tensor() == dup);
  CHECK(mentions(e, s.dir / "model-00001-of-00003.safetensors"));
  CHECK(mentions(e, s.dir / "model-00003-of-00003.safetensors"));
}

TEST_CASE("a directory without an index opens every *.safetensors, sorted", "[io][checkpoint]") {
  CAPTURE(io_seed());
  TempDir dir;
  Tensors all;
  write_shard(dir / "b.safetensors", expert_names(1, 0), all);
  write_shard(dir / "a.safetensors", expert_names(0, 0), all);
  write_text(dir / "notes.txt", "ignored");
  fs::create_directory(dir / "sub.safetensors");  // a directory, not a file: ignored
  Checkpoint ck = Checkpoint::open(dir.path());
  CHECK_FALSE(ck.has_config());
  REQUIRE(ck.files().size() == 2);
  CHECK(ck.files()[0]->path() == dir / "a.safetensors");
  CHECK(ck.files()[1]->path() == dir / "b.safetensors");
  check_all(ck, all);
  CHECK(ck.file_of(expert_names(1, 0)[2]) == dir / "b.safetensors");
}

TEST_CASE("bad paths, bad config.json and corrupt shards", "[io][checkpoint]") {
  CAPTURE(io_seed());
  TempDir dir;
  SECTION("nothing there") {
    Error e = open_error(dir / "nope", ErrorCode::Io);
    CHECK(e.file() == dir / "nope");
  }
  SECTION("an empty directory") { open_error(dir.path(), ErrorCode::Io); }
  SECTION("config.json that is not JSON") {
    Tensors all;
    write_shard(dir / "model.safetensors", expert_names(0, 0), all);
    write_text(dir / "config.json", "{\"model_type\": ");
    Error e = open_error(dir.path(), ErrorCode::InvalidConfig);
    CHECK(e.file() == dir / "config.json");
  }
  SECTION("a corrupt shard reports the shard's own error") {
    Tensors all;
    write_shard(dir / "model.safetensors", expert_names(0, 0), all);
    std::vector<uint8_t> bytes = read_bytes(dir / "model.safetensors");
    bytes.pop_back();
    write_bytes(dir / "model.safetensors", bytes);
    Error e = open_error(dir.path(), ErrorCode::MetadataIncompleteBuffer);
    CHECK(e.file() == dir / "model.safetensors");
  }
}
