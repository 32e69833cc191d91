// `moe-tool run SHARDS_OR_CKPT`: the MoE block of each layer through a backend (the CPU backend
// or the CUDA kernels) on the shards, against the float64 Eigen reference from the source
// checkpoint; a per-layer table or --json; exit 0 all layers pass, 1 any fails, 2 bad input.
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "command.h"
#include "core/error.h"
#include "plan/plan.h"
#include "reference/run_report.h"
#include "runtime/backend.h"
#include "runtime/device_info.h"
#include "runtime/multi_gpu.h"

namespace {

struct Args {
  std::string target, device, inputs, dump, layers;
  int tokens = 64, ref_tokens = 0, threads = 0;
  uint64_t seed = 0;
  double rtol = -1, atol = -1;
  bool json = false, quiet = false;
  std::string gpus;           // --gpus N|all|env: several GPUs through NCCL
  double nccl_timeout = 300;
  double gpu_timeout = moe::kDefaultGpuTimeoutS;
};

// --device default: the GPU when this build and machine have one.
std::unique_ptr<moe::MoeBackend> make_backend(const std::string& device, int threads) {
  const std::string d = device.empty() ? (moe::query_gpu().available ? "cuda" : "cpu") : device;
  if (d == "cpu") return moe::make_cpu_backend(threads);
#ifdef MOE_HAVE_CUDA
  return moe::make_cuda_backend();
#else
  // Not referenced in CPU-only builds, so they link without lib/runtime/cuda_backend.cpp.
  moe::fail(moe::ErrorCode::Cuda, "", "", "--device cuda: " + moe::query_gpu().reason);
#endif
}

// --gpus: the ranks spread over GPUs (runtime/multi_gpu.h), outputs all-reduced through NCCL. In
// launcher mode every process runs the check; process 0 prints.
int run_on_gpus(const moe::ShardSet& set, const Args& args, moe::RunOptions o) {
  MOE_CHECK(args.device.empty() || args.device == "cuda", InvalidArgument, "", "",
            "--gpus runs the CUDA backend; drop --device " + args.device);
  moe::MultiGpuOptions mg = moe::parse_gpus_option(args.gpus, std::getenv);
  mg.timeout_s = args.nccl_timeout;
  const auto backend = moe::make_multi_gpu_backend(set, mg);
  const bool printer = backend->world().process_rank == 0;
  if (!printer) o.quiet = true;
  const moe::RunReport report = moe::run_check(set, *backend, args.target, o);
  if (!printer) return report.pass ? 0 : 1;
  if (args.json) {
    nlohmann::json j = report.to_json();
    j["world"] = moe::world_json(backend->world());
    j["world"]["nccl_version"] = backend->nccl_version();
    moe::cli::print_json(j);
  } else {
    std::fputs(report.table().c_str(), stdout);
    std::printf("NCCL %s: %s\n", backend->nccl_version().c_str(),
                moe::world_summary(backend->world()).c_str());
  }
  return report.pass ? 0 : 1;
}

}  // namespace

static moe::cli::Registrar reg(40, [](CLI::App& app) {
  auto args = std::make_shared<Args>();
  auto* sub = app.add_subcommand(
      "run", "Run the MoE block on shards (or a checkpoint) against the CPU reference, per layer");
  sub->add_option("target", args->target, "Shard-set directory or checkpoint")->required();
  sub->add_option("--device", args->device, "Backend under test (default: cuda if available)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  sub->add_option("--tokens", args->tokens, "Random tokens per layer")->check(CLI::PositiveNumber);
  sub->add_option("--seed", args->seed, "Seed of the random inputs and token sampling");
  sub->add_option("--inputs", args->inputs,
                  "safetensors with layers.{L}.hidden_states [T, H]; only those layers run");
  sub->add_option("--dump", args->dump,
                  "Write layers.{L}.{output,reference,topk_ids,topk_weights,...} to a safetensors");
  sub->add_option("--layers", args->layers, "MoE layers to run, e.g. \"1,3-5\" (default: all)");
  sub->add_option("--ref-tokens", args->ref_tokens,
                  "Tokens the reference checks per layer, sampled deterministically (0 = all)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--rtol", args->rtol, "Bound on relative L2 error (default: docs/numerics.md)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--atol", args->atol, "Bound on max abs error (default: docs/numerics.md)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--threads", args->threads, "CPU threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--gpus", args->gpus,
                  "Spread the ranks over N GPUs (rank r on GPU r mod N), 'all', or 'env' (one "
                  "process per GPU from RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT); "
                  "outputs combined by NCCL all-reduce");
  sub->add_option("--nccl-timeout", args->nccl_timeout,
                  "Seconds any NCCL wait may take before the run is aborted")
      ->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_option("--gpu-timeout", args->gpu_timeout,
                  "Seconds any wait on the GPU may take before the command fails (a hung "
                  "kernel); 0 = no limit")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  sub->add_flag("--json", args->json, "Print the report as JSON");
  sub->add_flag("--quiet", args->quiet, "No progress line");
  return std::make_pair(sub, std::function<int()>([args] {
    moe::set_gpu_wait_timeout(args->gpu_timeout);
    moe::RunOptions o;
    o.tokens = args->tokens;
    o.seed = args->seed;
    o.inputs_file = args->inputs;
    o.dump_file = args->dump;
    if (!args->layers.empty()) o.layers = moe::parse_layer_list(args->layers);
    o.ref_tokens = args->ref_tokens;
    if (args->rtol >= 0) o.rtol = args->rtol;
    if (args->atol >= 0) o.atol = args->atol;
    o.threads = args->threads;
    o.quiet = args->quiet || args->json;
    const moe::ShardSet set = moe::open_run_target(args->target);
    if (!args->gpus.empty()) return run_on_gpus(set, *args, o);
    auto backend = make_backend(args->device, args->threads);
    const moe::RunReport report = moe::run_check(set, *backend, args->target, o);
    if (args->json) moe::cli::print_json(report.to_json());
    else std::fputs(report.table().c_str(), stdout);
    return report.pass ? 0 : 1;
  }));
});
