// `convert`: a checkpoint -> a shard set directory (docs/shard-format.md). Plans, builds each
// rank's tensors, streams them through the parallel writer into OUT.tmp-XXXXXX, writes
// manifest.json and renames the directory to OUT only when everything is on disk.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "plan/plan.h"

namespace moe {

struct ConvertOptions {
  PlanOptions plan;
  int threads = 0;  // 0 = all cores
  bool moe_only = false;  // skip non-moe.safetensors
  bool force = false;     // replace an existing OUT
  bool verify = false;    // re-read and compare with the source afterwards
  // fsync every file before the renames (the output survives a power loss once convert
  // returns). Off (--no-fsync): still atomic against a failed or killed process.
  bool durable = true;
  bool quiet = false;     // no progress line
  // Polled while writing (the CLI sets it from SIGINT / SIGTERM); true aborts with Error{Io}
  // "interrupted" and leaves no OUT behind.
  std::function<bool()> should_stop;
};

struct ConvertResult {
  std::string output;        // OUT
  nlohmann::json manifest;   // as written
  std::string placement_summary;
  uint64_t bytes_written = 0;
  uint64_t source_bytes = 0;  // the checkpoint's tensor bytes
  double seconds = 0;
  uint64_t peak_rss_bytes = 0;  // getrusage of this process, before --verify
  bool verified = false;        // --verify ran
  std::vector<std::string> verify_problems;  // empty = verify passed
  nlohmann::json to_json() const;
};

// Reads --expert-map FILE. Throws Io / InvalidArgument naming the file.
ExpertMapSpec read_expert_map_file(const std::string& path);

// Throws moe::Error (exit 2) for bad input, an existing OUT without force, write errors; leaves
// no OUT behind on failure.
ConvertResult convert_checkpoint(const std::string& ckpt_path, const std::string& out_dir,
                                 const ConvertOptions& options);

}  // namespace moe
