// Checks a checkpoint against its config.json and reports every problem at once: every expert of
// every MoE layer present with the shapes and dtypes the config implies, routers / biases /
// shared experts present, the config self-consistent, and (optionally) no NaN/Inf in any MoE
// tensor. Problems are collected, not thrown; unusable input (no config.json, an unsupported
// family, unreadable files) still throws moe::Error.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/profile.h"
#include "model/value_scan.h"

namespace moe {

struct ValidateOptions {
  bool scan_values = false;  // NaN/Inf scan of every MoE tensor
  int threads = 0;           // 0 = default_threads()
  bool quiet = true;         // no progress line
};

struct Problem {
  int layer = -1;      // model layer, -1 = about the whole config
  std::string tensor;  // "" when the problem is not one tensor's
  std::string text;
};

struct LayerSummary {
  int layer = 0;
  int experts_present = 0;          // experts whose gate, up and down all resolve
  int tensors = 0;                  // tensors under the layer's MoE block
  uint64_t bytes = 0;
  std::vector<std::string> dtypes;  // distinct dtypes under the block
  int problems = 0;
};

struct ValidateReport {
  std::string path;
  ModelProfile profile;
  std::vector<Problem> problems;
  std::vector<LayerSummary> layers;
  std::vector<std::string> notes;  // what was not checked and why
  bool scanned = false;
  uint64_t scanned_tensors = 0, scanned_bytes = 0;
  double scan_seconds = 0;
  std::vector<TensorScan> nonfinite;  // scanned tensors holding NaN or Inf
  bool ok() const { return problems.empty(); }
};

ValidateReport validate(const Checkpoint& ckpt, const ValidateOptions& options);
nlohmann::json report_to_json(const ValidateReport& r);

// Names of every tensor under the MoE block of `layer` (router, experts, scales, shared, ...),
// found by prefix, so quantized suffixes are included. Sorted.
std::vector<std::string> moe_block_tensors(const Checkpoint& ckpt, const ModelProfile& profile,
                                           int layer);

}  // namespace moe
