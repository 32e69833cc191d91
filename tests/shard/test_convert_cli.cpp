// `moe-tool convert` as a user runs it: exit codes 0 / 2, --json output, --verify, one-line
// errors, and no output left behind on failure. Skips (exit 77) when MOE_TOOL is not built.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "model/synthetic.h"
#include "support/temp_dir.h"

using namespace moe;
using namespace moe::test;
namespace fs = std::filesystem;

namespace {

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
