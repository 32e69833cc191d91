// `moe-tool bench --gpus N` (docs/perf.md "multi-GPU"): per shard rank the fused-MoE kernel time
// on its GPU, and per GPU the float32 all-reduce of the [T, H] output through NCCL, side by side.
// A shard set's ranks are mapped as `run --gpus` maps them (multi_gpu.h); synthetic weights are
// split EP-style, one contiguous block of experts per GPU. Throws Error{Cuda} / Error{Nccl} in a
// build without CUDA / NCCL.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/gpu_bench.h"
#include "runtime/multi_gpu.h"

namespace moe {

struct MultiGpuBenchRank {
  int rank = 0, member = 0, experts = 0;
  double kernel_us = 0;  // median per call, event-timed
};

struct MultiGpuBenchMember {
  int member = 0, device = 0;
  double kernel_us_sum = 0;  // its ranks in turn
  double allreduce_us = 0;   // median, after a barrier (no wait for a slow peer inside)
};

struct MultiGpuBenchCell {
  int tokens = 0;
  std::vector<MultiGpuBenchRank> ranks;
  std::vector<MultiGpuBenchMember> members;
  double allreduce_bytes = 0;  // T * H * 4
  double allreduce_us = 0;     // slowest member's median
  double busbw_gbs = 0;        // bytes * 2 (N - 1) / N / time, as nccl-tests reports
  double step_us = 0;          // slowest member's kernels + all-reduce
};

struct MultiGpuBenchReport {
  BenchShape shape;
  std::string dtype, device, nccl_version;
  WorldPlan world;
  std::vector<MultiGpuBenchCell> cells;
};

MultiGpuBenchReport run_multi_gpu_bench(const BenchOptions& opts, const MultiGpuOptions& gpus);
nlohmann::json multi_gpu_bench_to_json(const MultiGpuBenchReport& r);

}  // namespace moe
