// `moe-tool convert` as a user runs it: exit codes 0 / 2, --json output, --verify, one-line
// errors, and no output left behind on failure. Skips (exit 77) when MOE_TOOL is not built.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <algorithm>

#include "model/synthetic.h"
#include "support/temp_dir.h"

using namespace moe;
using namespace moe::test;
namespace fs = std::filesystem;

namespace {

// moe-tool is built with the same MOE_SANITIZE flags as this test (CMakeLists.txt).
#ifdef MOE_SANITIZED
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

struct Run {
  int rc;
  std::string out, err;
};

Run run_tool(const std::string& args, const TempDir& tmp) {
  const char* tool = std::getenv("MOE_TOOL");
  const std::string cmd = std::string(tool) + " " + args + " >" + (tmp / "stdout") + " 2>" + (tmp / "stderr");
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_text(tmp / "stdout"), read_text(tmp / "stderr")};
}

bool tool_available() {
  const char* tool = std::getenv("MOE_TOOL");
  return tool && ::access(tool, X_OK) == 0;
}

}  // namespace

TEST_CASE("moe-tool convert: exit codes, --json, --verify", "[shard][cli]") {
  if (!tool_available()) {
    std::fprintf(stderr, "SKIP: MOE_TOOL is not set or not executable\n");
    std::exit(77);
  }
  TempDir tmp;
  SyntheticSpec spec;
  spec.family = Family::Qwen2Moe;
  spec.hidden_size = 32;
  spec.moe_intermediate_size = 16;
  spec.num_experts = 6;
  spec.threads = 1;
  write_synthetic_checkpoint(tmp / "ckpt", spec);

  Run ok = run_tool("convert " + (tmp / "ckpt") + " -o " + (tmp / "out") +
                        " --tp 2 --ep 4 --redundant-experts 1 --placement round_robin --verify --json",
                    tmp);
  REQUIRE(ok.rc == 0);
  auto j = nlohmann::json::parse(ok.out);
  CHECK(j["world_size"] == 8);
  CHECK(j["uneven_placement"] == true);
  CHECK(j["experts_per_rank"] == nlohmann::json::array({2, 2, 2, 2, 2, 2, 1, 1}));
  CHECK(j["verify"]["ok"] == true);
  CHECK(j["files"].size() == 9u);
  CHECK(j["peak_rss_bytes"].get<uint64_t>() > 0);

  Run human = run_tool("convert " + (tmp / "ckpt") + " -o " + (tmp / "out2") + " --quiet", tmp);
  CHECK(human.rc == 0);
  CHECK(human.out.empty());
  Run summary = run_tool("convert " + (tmp / "ckpt") + " -o " + (tmp / "out2") + " --force --ep 3", tmp);
  CHECK(summary.rc == 0);
  CHECK(summary.out.find("(even)") != std::string::npos);

  Run exists = run_tool("convert " + (tmp / "ckpt") + " -o " + (tmp / "out"), tmp);
  CHECK(exists.rc == 2);
  CHECK(exists.err.find("output exists") != std::string::npos);
  CHECK(std::count(exists.err.begin(), exists.err.end(), '\n') == 1);

  Run bad_tp = run_tool("convert " + (tmp / "ckpt") + " -o " + (tmp / "out3") + " --tp 3", tmp);
  CHECK(bad_tp.rc == 2);
  CHECK(bad_tp.err.find("--tp 3 does not divide") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp / "out3"));

  Run bad_arg = run_tool("convert " + (tmp / "ckpt") + " -o " + (tmp / "out3") + " --placement spiral", tmp);
  CHECK(bad_arg.rc == 2);

  Run bad_layers = run_tool("convert " + (tmp / "ckpt") + " -o " + (tmp / "out3") + " --layers 0-x", tmp);
  CHECK(bad_layers.rc == 2);
  CHECK_FALSE(fs::exists(tmp / "out3"));
}

TEST_CASE("moe-tool inspect / validate accept a shard set; --expert-map", "[shard][cli]") {
  if (!tool_available()) {
    std::fprintf(stderr, "SKIP: MOE_TOOL is not set or not executable\n");
    std::exit(77);
  }
  TempDir tmp;
  SyntheticSpec spec;
  spec.family = Family::GptOss;
  spec.hidden_size = 32;
  spec.moe_intermediate_size = 16;
  spec.num_experts = 4;
  spec.threads = 1;
  write_synthetic_checkpoint(tmp / "ckpt", spec);
  write_text(tmp / "map.json", R"({"layers": {"0": [3, 2, 1, 0, 3, 3]}})");
  const std::string out = tmp / "out";
  Run conv = run_tool("convert " + (tmp / "ckpt") + " -o " + out +
                          " --ep 3 --expert-map " + (tmp / "map.json") + " --quiet",
                      tmp);
  REQUIRE(conv.rc == 0);
  auto m = nlohmann::json::parse(read_text(out + "/manifest.json"));
  CHECK(m["redundant_experts"] == 2);
  CHECK(m["physical_to_logical"]["0"] == nlohmann::json::array({3, 2, 1, 0, 3, 3}));
  CHECK(m["physical_to_logical"]["1"] == nlohmann::json::array({0, 1, 2, 3, 0, 1}));

  Run insp = run_tool("inspect " + out + " --json", tmp);
  REQUIRE(insp.rc == 0);
  auto ij = nlohmann::json::parse(insp.out);
  CHECK(ij["kind"] == "shard_set");
  CHECK(ij["files"].size() == 4u);  // 3 ranks + non-moe
  CHECK(ij["files"][2]["local_to_physical"] == nlohmann::json::array({4, 5}));
  Run text = run_tool("inspect " + out, tmp);  // the table for people, not JSON
  REQUIRE(text.rc == 0);
  CHECK(text.out.find("TP 1 x EP 3 = 3 ranks") != std::string::npos);
  CHECK(text.out.find("rank-00002-of-00003.safetensors") != std::string::npos);
  CHECK(text.out.find("6 physical experts") != std::string::npos);
  CHECK(text.out.find('{') == std::string::npos);

  Run val = run_tool("validate " + out + " --json", tmp);
  CHECK(val.rc == 0);
  CHECK(nlohmann::json::parse(val.out)["ok"] == true);
  // One flipped byte in the last rank file: validate reports it and exits 1.
  {
    const std::string f = out + "/rank-00002-of-00003.safetensors";
    std::string bytes = read_text(f);
    bytes[bytes.size() - 3] ^= 0x41;
    write_text(f, bytes);
  }
  Run bad = run_tool("validate " + out, tmp);
  CHECK(bad.rc == 1);
  CHECK(bad.out.find("xxh64") != std::string::npos);
  CHECK(bad.out.find("INVALID") != std::string::npos);

  // A map that leaves a logical expert without a replica: exit 2 naming the map file.
  write_text(tmp / "bad-map.json", R"({"physical_to_logical": [0, 1, 2, 2]})");
  Run badmap = run_tool("convert " + (tmp / "ckpt") + " -o " + (tmp / "out2") + " --expert-map " +
                            (tmp / "bad-map.json"),
                        tmp);
  CHECK(badmap.rc == 2);
  CHECK(badmap.err.find("bad-map.json") != std::string::npos);
  CHECK(badmap.err.find("logical expert 3 has no physical replica") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp / "out2"));
}

TEST_CASE("moe-tool convert: SIGTERM mid-way removes the temporary output; memory stays bounded",
          "[shard][cli]") {
  if (!tool_available()) {
    std::fprintf(stderr, "SKIP: MOE_TOOL is not set or not executable\n");
    std::exit(77);
  }
  TempDir tmp;
  SyntheticSpec spec;  // ~100 MB of experts: the writer is still busy when the signal comes
  spec.family = Family::Mixtral;
  spec.num_layers = 2;
  spec.hidden_size = 1024;
  spec.moe_intermediate_size = 512;
  spec.num_experts = 16;
  spec.vocab_size = 64;
  write_synthetic_checkpoint(tmp / "ckpt", spec);
  const std::string out = tmp / "out";
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const char* tool = std::getenv("MOE_TOOL");
    const std::string ckpt = tmp / "ckpt";
    ::execl(tool, tool, "convert", ckpt.c_str(), "-o", out.c_str(), "--tp", "2", "--ep", "4",
            "--threads", "1", "--quiet", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Signal once the writer has started (a temporary rank file exists), not before the handler
  // is installed.
  bool started = false;
  for (int i = 0; i < 2000 && !started; ++i) {
    for (const auto& e : fs::directory_iterator(tmp.path()))
      if (e.path().filename().string().rfind("out.tmp-", 0) == 0)
        for (const auto& f : fs::directory_iterator(e.path()))
          started |= f.path().filename().string().rfind("rank-", 0) == 0;
    if (!started) ::usleep(1000);
  }
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  if (!started || WEXITSTATUS(status) == 0) {
    // The conversion won the race: then it must be complete and valid.
    WARN("convert finished before SIGTERM arrived");
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(fs::exists(out + "/manifest.json"));
  } else {
    CHECK(WEXITSTATUS(status) == 2);
    CHECK_FALSE(fs::exists(out));
  }
  int left = 0;
  for (const auto& e : fs::directory_iterator(tmp.path()))
    left += e.path().filename().string().rfind("out.", 0) == 0;
  CHECK(left == 0);

  // Memory is bounded by the writer's buffers, not the checkpoint: 96 MiB of experts convert
  // in well under that (the bound the issue sets is 1 GiB + the largest tensor).
  Run full = run_tool("convert " + (tmp / "ckpt") + " -o " + (tmp / "full") + " --tp 2 --ep 2 --json", tmp);
  REQUIRE(full.rc == 0);
  const auto j = nlohmann::json::parse(full.out);
  CHECK(j["source_bytes"].get<uint64_t>() > (96ull << 20));
  if (kSanitized)  // shadow memory and the freed-block quarantine inflate RSS: release asserts it
    WARN("sanitizer build: peak RSS " << j["peak_rss_bytes"].get<uint64_t>() << " not checked");
  else
    CHECK(j["peak_rss_bytes"].get<uint64_t>() < (64ull << 20));
}
