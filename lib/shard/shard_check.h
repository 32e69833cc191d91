// Checks of a written shard set: inspect (what is in it), validate (checksums and structure:
// every physical expert on exactly one EP rank per TP rank, every logical expert somewhere,
// shapes as the manifest says) and compare_with_source (every expert's bytes against the
// checkpoint, through ExpertMapping, with code independent of the writer's builder).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace moe {

struct CheckReport {
  std::vector<std::string> problems;  // one line each; empty = passed
  nlohmann::json stats = nlohmann::json::object();  // counts of what was checked
  bool ok() const { return problems.empty(); }
  nlohmann::json to_json() const;  // {"ok", "problems", "stats"}
};

// The manifest's summary plus, per file, its size and tensor count. Throws InvalidShard / Io
// when dir has no readable manifest.json.
nlohmann::json inspect_shard_set(const std::string& dir);

// Problems in the files are reported (exit 1 in the CLI); an unreadable manifest throws (exit 2).
CheckReport validate_shard_set(const std::string& dir);

// Every stored expert, router and shared expert byte-compared with the source checkpoint, pads
// checked zero. `ckpt_path` empty: the manifest's source path.
CheckReport compare_with_source(const std::string& dir, const std::string& ckpt_path, int threads);

}  // namespace moe
