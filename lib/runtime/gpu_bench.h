// The fused-MoE benchmark behind `moe-tool bench` (docs/perf.md): synthetic weights for the
// named shapes of perf-anchors.md or a real shard set's layer, CUDA-graph timing (10 calls per
// graph, replayed, median; weight sets rotated), and the floor from the HBM bandwidth and bf16
// tensor-core rate measured in the same run. Throws Error{Cuda} in a build without CUDA.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace moe {

struct BenchShape {
  std::string name;
  int experts = 0, top_k = 0, hidden = 0, inter = 0;
};
// mixtral, qwen3-30b, deepseek-v3-tp8, gpt-oss-120b (perf-anchors.md).
const std::vector<BenchShape>& bench_shapes();
const BenchShape* find_bench_shape(const std::string& name);  // null if unknown

struct BenchOptions {
  BenchShape shape;            // synthetic when `source` is empty
  std::string source;          // shard set directory or checkpoint, else empty
  int layer = -1;              // model layer index for `source` (-1: first MoE layer)
  int rank = 0;                // rank of `source` whose experts are timed
  std::vector<int> tokens{1, 16, 64, 256, 1024, 4096};
  std::string dtype = "bf16";  // bf16 | fp16 (synthetic only)
  int weight_sets = 3;         // rotated when they fit in memory
  bool sweep = false;          // also time every tile configuration (tuning)
  std::vector<std::string> sweep_rows;  // only rows whose name starts with one of these (empty: all)
  // "GATE_UP+DOWN" row pairs also timed in turn after each cell (an A/B in one process: list a
  // pair more than once to alternate); each keeps the cell's gather order and row sum where it
  // can, split 1. Reported with the sweep's entries.
  std::vector<std::string> pairs;
  bool breakdown = false;      // also time the alignment, gate-up and down launches apart
  int check_max_tokens = 256;  // compare with the naive kernel up to this many tokens
  bool measure_ceilings = true;
  // Seconds each ceiling, cell and breakdown stage runs before it is timed (0: timed after two
  // warm-up calls; sweep rows never settle). Under a power limit the clocks settle within about
  // a second of load, so without it a cell's time depends on what ran just before (docs/perf.md,
  // "power limit").
  double settle_s = 0;
  bool quiet = false;
};

struct BenchSweepEntry {
  std::string gate_up, down;
  int split_k = 1;
  bool gather_by_token = false;
  bool down_rows = false;
  double us = 0;
};

struct BenchCell {
  int tokens = 0;
  double us = 0;           // median per call
  double us_spread = 0;    // (p90 - p10) / median of the replays
  double tflops = 0;       // 2 * T * top_k * 3 * H * I / time
  double weight_gbs = 0;   // bytes of expert weights touched / time
  double floor_us = 0;     // max(bytes / HBM, flops / tensor peak)
  double x_floor = 0;
  int experts_touched = 0;
  double bytes_touched = 0;
  std::string gate_up_cfg, down_cfg;
  int split_k = 1;
  bool gather_by_token = false;  // the gate-up row's gather of x in token order
  bool down_rows = false;        // the down rows stored in sorted order, summed by token
  double check_rel_l2 = -1;  // vs the naive kernel (-1: not checked)
  double check_max_abs = -1;
  std::vector<BenchSweepEntry> sweep;
  std::vector<BenchSweepEntry> pairs;  // --pairs, in the order timed
  // --breakdown: each stage alone in its own graph (no overlap with its neighbours; gate-up
  // includes the gather of x where its row reads sorted x); 0 when not measured.
  double align_us = 0, gate_up_us = 0, down_us = 0;
  double gate_up_tflops = 0, down_tflops = 0;
};

struct BenchReport {
  BenchShape shape;
  std::string dtype, device;
  double hbm_gbs = 0, tensor_tflops = 0;  // measured ceilings
  int weight_sets = 1;
  double settle_s = 0;  // BenchOptions::settle_s
  bool wgmma = false;
  std::vector<BenchCell> cells;
};

BenchReport run_bench(const BenchOptions& opts);
nlohmann::json bench_to_json(const BenchReport& r);

}  // namespace moe
