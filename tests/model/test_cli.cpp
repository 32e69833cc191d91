// The built moe-tool (env MOE_TOOL) end to end: make-example -> inspect -> validate, exit codes
// 0 / 1 / 2, JSON output, and --force. Skipped (exit 77) when the binary is not there.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "support/temp_dir.h"

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string tool() {
  const char* t = std::getenv("MOE_TOOL");
  if (!t || access(t, X_OK) != 0) {
    std::fprintf(stderr, "MOE_TOOL not set or not executable: skipping\n");
    std::exit(77);
  }
  return t;
}

struct Result {
  int rc;
  std::string out, err;
};

Result run(const std::string& args, const moe::test::TempDir& dir) {
  const std::string err_path = dir / "stderr.txt";
  const std::string cmd = tool() + " " + args + " 2>" + err_path;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, moe::test::read_text(err_path)};
}

}  // namespace

TEST_CASE("make-example, inspect and validate through the CLI", "[cli][model]") {
  moe::test::TempDir dir;
  const std::string ck = dir / "ck";
  auto r = run("make-example --family deepseek_v3 -o " + ck + " --layers 3 --shards 2 --quiet", dir);
  REQUIRE(r.rc == 0);
  CHECK(fs::exists(ck + "/model.safetensors.index.json"));

  r = run("inspect --json " + ck, dir);
  REQUIRE(r.rc == 0);
  json j = json::parse(r.out);
  CHECK(j["family"] == "deepseek_v3");
  CHECK(j["moe_layers"] == json({1, 2}));
  CHECK(j["num_experts"] == 8);
  CHECK(j["top_k"] == 2);
  CHECK(j["hidden_size"] == 64);
  CHECK(j["moe_intermediate_size"] == 32);
  CHECK(j["quantization"]["name"] == "none");
  CHECK(j["layers"].size() == 2);
  CHECK(j["layers"][0]["bytes"].get<uint64_t>() > 0);

  r = run("inspect " + ck, dir);
  CHECK(r.rc == 0);
  CHECK_THAT(r.out, Catch::Contains("sigmoid"));

  r = run("validate --scan-values --json --threads 2 " + ck, dir);
  REQUIRE(r.rc == 0);
  j = json::parse(r.out);
  CHECK(j["ok"] == true);
  CHECK(j["scan"]["tensors"].get<int>() > 0);

  // Without --force an existing output is refused; with it, replaced.
  r = run("make-example --family deepseek_v3 -o " + ck, dir);
  CHECK(r.rc == 2);
  CHECK_THAT(r.err, Catch::Contains("already exists"));
  r = run("make-example --family mixtral -o " + ck + " --force --json", dir);
  REQUIRE(r.rc == 0);
  CHECK(json::parse(r.out)["family"] == "mixtral");
  CHECK_FALSE(fs::exists(ck + "/model.safetensors.index.json"));

  // A config that disagrees with the tensors: exit 1, every problem listed.
  json cfg = json::parse(moe::test::read_text(ck + "/config.json"));
  cfg["num_local_experts"] = 9;
  moe::test::write_text(ck + "/config.json", cfg.dump());
  r = run("validate --json " + ck, dir);
  CHECK(r.rc == 1);
  j = json::parse(r.out);
  CHECK(j["ok"] == false);
  CHECK(j["problems"].size() == 2 * (1 + 3));  // per layer: router shape, 3 weights of expert 8
  r = run("validate " + ck, dir);
  CHECK(r.rc == 1);
  CHECK_THAT(r.out, Catch::Contains("INVALID: 8 problem(s)"));
}

TEST_CASE("unusable input and bad arguments exit 2 with one line", "[cli][model]") {
  moe::test::TempDir dir;
  auto r = run("make-example --family nope -o " + (dir / "x"), dir);
  CHECK(r.rc == 2);
  CHECK_THAT(r.err, Catch::Contains("unknown family 'nope'"));
  CHECK_FALSE(fs::exists(dir / "x"));

  REQUIRE(run("make-example --family olmoe -o " + (dir / "ck") + " --quiet", dir).rc == 0);
  fs::remove(dir / "ck/config.json");
  r = run("validate " + (dir / "ck"), dir);
  CHECK(r.rc == 2);
  CHECK_THAT(r.err, Catch::Contains("config.json not found"));
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  r = run("inspect " + (dir / "missing"), dir);
  CHECK(r.rc == 2);

  // --force never replaces a directory that is not a checkpoint.
  fs::create_directories(dir / "home/sub");
  r = run("make-example --family olmoe --force -o " + (dir / "home"), dir);
  CHECK(r.rc == 2);
  CHECK(fs::exists(dir / "home/sub"));
  r = run("make-example --family mixtral --dense-layers 1 -o " + (dir / "y"), dir);
  CHECK(r.rc == 2);
  CHECK_THAT(r.err, Catch::Contains("MoE in every layer"));
}
