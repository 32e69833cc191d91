// manifest.json of a shard set (docs/shard-format.md "manifest.json"): built from a plan by
// convert and by ShardSet::from_checkpoint, read back by ShardSet::open and the checks.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "model/profile.h"
#include "plan/plan.h"
#include "shard/shard_set.h"

namespace moe {

constexpr const char* kManifestFormat = "moe-tool-shards";
constexpr int kManifestVersion = 1;
constexpr const char* kShardFileFormat = "moe-tool-shard";  // __metadata__ "format"
constexpr const char* kManifestName = "manifest.json";
constexpr const char* kNonMoeName = "non-moe.safetensors";

std::string rank_file_name(int rank, int world_size);  // rank-00000-of-00004.safetensors

// Everything but "source", file sizes and checksums (convert adds those once written).
nlohmann::json manifest_from_plan(const Plan& plan, const ModelProfile& profile);

// The __metadata__ of a rank file.
std::map<std::string, std::string> rank_metadata(const Plan& plan, int rank);

// Reads and checks the fields a reader relies on; throws InvalidShard naming the field.
ShardGeometry geometry_from_manifest(const nlohmann::json& m, const std::string& path);
std::vector<RankInfo> ranks_from_manifest(const nlohmann::json& m, const std::string& path);
std::vector<int> layers_from_manifest(const nlohmann::json& m, const std::string& path);

}  // namespace moe
