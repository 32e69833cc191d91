// Shared helpers of the shard tests: synthetic checkpoints per family and an independent
// reassembly of a shard set that compares it with the generator's values.
#pragma once
#include <string>
#include <vector>

#include "model/synthetic.h"
#include "plan/plan.h"

namespace moe::test {

constexpr Family kAllFamilies[] = {Family::Mixtral,   Family::Qwen2Moe,  Family::Qwen3Moe,
                                   Family::DeepseekV2, Family::DeepseekV3, Family::Glm4Moe,
                                   Family::Olmoe,     Family::GraniteMoe, Family::Llama4,
                                   Family::GptOss,    Family::Ernie45Moe};

SyntheticSpec small_spec(Family f, uint64_t seed, int hidden = 20, int inter = 10, int experts = 6);

// Checks (with Catch2 assertions) that the shard set in `dir` holds exactly what the plan says:
// every rank's experts equal the generator's values for their TP slice, pads are zero, replicas
// are byte-identical, the maps are consistent, and reassembling all TP slices gives each
// logical expert back bit for bit. Returns the number of experts reassembled.
int check_shard_set_against_spec(const std::string& dir, const SyntheticSpec& spec,
                                 const PlanOptions& options);

// All regular files under dir, relative name -> bytes.
std::vector<std::pair<std::string, std::string>> read_all_files(const std::string& dir);

}  // namespace moe::test
