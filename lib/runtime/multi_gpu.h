// `run` / `bench` over several GPUs combined through NCCL (README "Several GPUs"): which shard
// rank runs on which member of the NCCL world (rank r -> member r mod N), how the world is formed
// (one process with a thread per GPU, or one process per GPU from launcher variables), and the
// backend that runs each member's ranks and all-reduces their partial outputs.
#pragma once
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "runtime/backend.h"

namespace moe {

// Shard ranks of each world member: member m runs ranks m, m + N, m + 2N, ... (in that order)
// and sums them locally before the all-reduce. Throws InvalidArgument unless
// 1 <= world_size <= num_ranks (a member without a rank would add nothing but a wait).
std::vector<std::vector<int>> assign_ranks(int num_ranks, int world_size);

// One process per GPU, started by a launcher (torchrun, mpirun, srun): the launcher's rank
// variables plus MASTER_ADDR / MASTER_PORT (MOE_NCCL_BOOTSTRAP_PORT overrides the port).
struct LauncherEnv {
  std::string launcher;  // which variables were read: "torchrun", "Open MPI", "Slurm"
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr;
  int port = 0;
};
using EnvLookup = std::function<const char*(const char*)>;  // getenv, or a table in tests
// nullopt when no launcher's variables are set; throws InvalidArgument naming the variable that
// is missing or malformed.
std::optional<LauncherEnv> read_launcher_env(const EnvLookup& getenv_fn);

struct MultiGpuOptions {
  int gpus = 0;  // one process: GPUs 0..gpus-1; 0 = every visible GPU (at most one per rank)
  std::vector<int> devices;  // explicit CUDA device per member instead of `gpus` (tests)
  // Set: this process is one member, on GPU local_rank (GPU 0 when it sees only one).
  std::optional<LauncherEnv> launcher;
  double timeout_s = 300;  // watchdog on every NCCL wait (init, all-reduce)
};

// `--gpus N|all|env`: N GPUs in this process, every visible GPU, or one process per GPU from the
// launcher variables. Throws InvalidArgument on anything else.
MultiGpuOptions parse_gpus_option(const std::string& value, const EnvLookup& getenv_fn);

// The NCCL world for a shard set of `num_ranks` ranks on a machine with `visible_devices` GPUs.
struct WorldPlan {
  int world_size = 1;
  std::optional<LauncherEnv> launcher;  // set: one process per GPU, unique id over TCP
  int process_rank = 0;                 // this process's first member (launcher: RANK)
  std::vector<int> devices;             // this process's members' CUDA devices, in member order
  std::vector<std::vector<int>> ranks_of_member;  // all members of the world
};
// Pure: throws InvalidArgument for a world that does not fit (more GPUs asked than visible, more
// members than ranks, LOCAL_RANK beyond the visible GPUs).
WorldPlan plan_world(int num_ranks, int visible_devices, const MultiGpuOptions& options);
nlohmann::json world_json(const WorldPlan& plan);
// "world of 2 (thread per GPU): GPU 0 runs ranks 0, 2; GPU 1 runs ranks 1, 3"
std::string world_summary(const WorldPlan& plan);

class MultiGpuBackend : public MoeBackend {
 public:
  virtual const WorldPlan& world() const = 0;
  virtual std::string nccl_version() const = 0;
};

// Joins the NCCL world for `set` (every member's communicator initialized, bounded by the
// watchdog). Throws Error{Cuda} / Error{Nccl} when the build has no CUDA or no NCCL, or the
// world cannot form; InvalidArgument for a world that does not fit.
std::unique_ptr<MultiGpuBackend> make_multi_gpu_backend(const ShardSet& set,
                                                        const MultiGpuOptions& options);

}  // namespace moe
