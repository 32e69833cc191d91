#include "runtime/multi_gpu.h"

#include <string>

#include "core/error.h"
#include "runtime/device_info.h"

#ifdef MOE_HAVE_NCCL
#include "runtime/nccl_backend.h"
#endif

namespace moe {

namespace {

// The variables each launcher sets for every process it starts (first match wins).
struct LauncherVars {
  const char* name;
  const char* rank;
  const char* world_size;
  const char* local_rank;
};
constexpr LauncherVars kLaunchers[] = {
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
    {"Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"MPICH", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"},
    {"Slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
};

// Strict decimal integer in [lo, hi]; nullopt otherwise.
std::optional<int> parse_int(const std::string& s, int lo, int hi) {
  if (s.empty() || s.size() > 9) return std::nullopt;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

int env_int(const EnvLookup& getenv_fn, const char* name, int lo, int hi, const std::string& why) {
  const char* v = getenv_fn(name);
  MOE_CHECK(v && *v, InvalidArgument, "", "", std::string(name) + " is not set (" + why + ")");
  const std::optional<int> i = parse_int(v, lo, hi);
  MOE_CHECK(i.has_value(), InvalidArgument, "", "",
            std::string(name) + "='" + v + "' is not an integer in " + std::to_string(lo) + ".." +
                std::to_string(hi));
  return *i;
}

}  // namespace

std::vector<std::vector<int>> assign_ranks(int num_ranks, int world_size) {
  MOE_CHECK(num_ranks >= 1, InvalidArgument, "", "", "the shard set has no ranks");
  MOE_CHECK(world_size >= 1, InvalidArgument, "", "",
            "a world of " + std::to_string(world_size) + " GPUs");
  MOE_CHECK(world_size <= num_ranks, InvalidArgument, "", "",
            "a world of " + std::to_string(world_size) + " GPUs for a shard set of " +
                std::to_string(num_ranks) + " rank" + (num_ranks == 1 ? "" : "s") +
                ": every GPU needs at least one rank; use at most " + std::to_string(num_ranks) +
                " GPUs (or convert for more ranks)");
  std::vector<std::vector<int>> out(static_cast<size_t>(world_size));
  for (int r = 0; r < num_ranks; ++r) out[static_cast<size_t>(r % world_size)].push_back(r);
  return out;
}

std::optional<LauncherEnv> read_launcher_env(const EnvLookup& getenv_fn) {
  const LauncherVars* found = nullptr;
  for (const LauncherVars& l : kLaunchers) {
    const char* r = getenv_fn(l.rank);
    const char* w = getenv_fn(l.world_size);
    if (r && *r && w && *w) {
      found = &l;
      break;
    }
  }
  if (!found) return std::nullopt;
  LauncherEnv env;
  env.launcher = found->name;
  env.world_size = env_int(getenv_fn, found->world_size, 1, 1 << 20, "the number of processes");
  env.rank = env_int(getenv_fn, found->rank, 0, env.world_size - 1, "this process's rank");
  env.local_rank =
      env_int(getenv_fn, found->local_rank, 0, 1 << 16,
              "this process's GPU on its node; " + std::string(found->name) + " sets it");
  const char* addr = getenv_fn("MASTER_ADDR");
  MOE_CHECK(addr && *addr, InvalidArgument, "", "",
            "MASTER_ADDR is not set (the host of process 0, where the NCCL unique id is served)");
  env.master_addr = addr;
  const char* override_port = getenv_fn("MOE_NCCL_BOOTSTRAP_PORT");
  env.port = override_port && *override_port
                 ? env_int(getenv_fn, "MOE_NCCL_BOOTSTRAP_PORT", 1, 65535, "")
                 : env_int(getenv_fn, "MASTER_PORT", 1, 65535,
                           "the TCP port on which process 0 serves the NCCL unique id");
  return env;
}

MultiGpuOptions parse_gpus_option(const std::string& value, const EnvLookup& getenv_fn) {
  MultiGpuOptions o;
  if (value == "all") return o;
  if (value == "env") {
    o.launcher = read_launcher_env(getenv_fn);
    MOE_CHECK(o.launcher.has_value(), InvalidArgument, "", "",
              "--gpus env: no launcher variables are set (RANK and WORLD_SIZE from torchrun, "
              "OMPI_COMM_WORLD_*, PMI_*, or SLURM_PROCID and SLURM_NTASKS)");
    return o;
  }
  const std::optional<int> n = parse_int(value, 1, 1 << 16);
  MOE_CHECK(n.has_value(), InvalidArgument, "", "",
            "--gpus '" + value + "': give a number of GPUs (1 or more), 'all' or 'env'");
  o.gpus = *n;
  return o;
}

WorldPlan plan_world(int num_ranks, int visible_devices, const MultiGpuOptions& o) {
  WorldPlan p;
  const std::string visible =
      std::to_string(visible_devices) + " visible CUDA device" + (visible_devices == 1 ? "" : "s");
  MOE_CHECK(visible_devices >= 1, InvalidArgument, "", "",
            "several-GPU run: this machine has no visible CUDA device");
  if (o.launcher) {
    const LauncherEnv& env = *o.launcher;
    // A launcher that binds one GPU per process (srun --gpus-per-task=1) leaves one visible.
    MOE_CHECK(env.local_rank < visible_devices || visible_devices == 1, InvalidArgument, "", "",
              "local rank " + std::to_string(env.local_rank) + " (" + env.launcher +
                  ") but this process sees " + visible + "; start at most " +
                  std::to_string(visible_devices) + " processes per node");
    p.launcher = env;
    p.world_size = env.world_size;
    p.process_rank = env.rank;
    p.devices = {visible_devices == 1 ? 0 : env.local_rank};
  } else if (!o.devices.empty()) {
    for (int d : o.devices)
      MOE_CHECK(d >= 0 && d < visible_devices, InvalidArgument, "", "",
                "CUDA device " + std::to_string(d) + " asked for; this machine has " + visible);
    p.world_size = int(o.devices.size());
    p.devices = o.devices;
  } else {
    MOE_CHECK(o.gpus <= visible_devices, InvalidArgument, "", "",
              "--gpus " + std::to_string(o.gpus) + " but this machine has " + visible +
                  " (CUDA_VISIBLE_DEVICES limits them)");
    p.world_size = o.gpus > 0 ? o.gpus : std::min(visible_devices, num_ranks);
    for (int d = 0; d < p.world_size; ++d) p.devices.push_back(d);
  }
  p.ranks_of_member = assign_ranks(num_ranks, p.world_size);
  return p;
}

nlohmann::json world_json(const WorldPlan& p) {
  nlohmann::json members = nlohmann::json::array();
  for (size_t m = 0; m < p.ranks_of_member.size(); ++m) {
    nlohmann::json j = {{"member", m}, {"ranks", p.ranks_of_member[m]}};
    const int local = int(m) - p.process_rank;
    if (local >= 0 && local < int(p.devices.size())) j["device"] = p.devices[size_t(local)];
    members.push_back(j);
  }
  return {{"world_size", p.world_size},
          {"mode", p.launcher ? "process per GPU" : "thread per GPU"},
          {"rank_to_member", "rank r runs on member r mod world_size"},
          {"process_rank", p.process_rank},
          {"members", members}};
}

std::string world_summary(const WorldPlan& p) {
  std::string s = "world of " + std::to_string(p.world_size) + " (" +
                  (p.launcher ? "process per GPU" : "thread per GPU") + "):";
  for (size_t m = 0; m < p.ranks_of_member.size(); ++m) {
    const int local = int(m) - p.process_rank;
    const bool here = local >= 0 && local < int(p.devices.size());
    s += (m ? "; " : " ") +
         (here ? "GPU " + std::to_string(p.devices[size_t(local)])
               : "process " + std::to_string(m)) +
         " runs rank" + (p.ranks_of_member[m].size() == 1 ? " " : "s ");
    for (size_t i = 0; i < p.ranks_of_member[m].size(); ++i)
      s += (i ? ", " : "") + std::to_string(p.ranks_of_member[m][i]);
  }
  return s;
}

std::unique_ptr<MultiGpuBackend> make_multi_gpu_backend(const ShardSet& set,
                                                        const MultiGpuOptions& options) {
#ifndef MOE_HAVE_CUDA
  (void)set;
  (void)options;
  fail(ErrorCode::Cuda, "", "", "several-GPU run: moe-tool was built without CUDA");
#elif !defined(MOE_HAVE_NCCL)
  (void)set;
  (void)options;
  fail(ErrorCode::Nccl, "", "",
       "several-GPU run: moe-tool was built without NCCL "
       "(no nccl.h / libnccl at configure time; see README)");
#else
  const GpuInfo info = query_gpu();
  MOE_CHECK(info.available, Cuda, "", "", "several-GPU run: " + info.reason);
  const WorldPlan plan = plan_world(int(set.ranks().size()), info.device_count, options);
  return make_nccl_backend(set, plan, options.timeout_s);
#endif
}

}  // namespace moe
