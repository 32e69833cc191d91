#include "runtime/nccl_world.h"

#include <cstring>
#include <exception>
#include <thread>

#include "runtime/gpu_buffer.h"
#include "runtime/nccl_bootstrap.h"

namespace moe {

namespace {

std::string member_name(const WorldPlan& plan, int member, int device) {
  const std::string nccl =
      "NCCL rank " + std::to_string(member) + " of " + std::to_string(plan.world_size);
  return (plan.launcher ? "process " + std::to_string(member) + ", " : std::string()) + "GPU " +
         std::to_string(device) + " (" + nccl + ")";
}

// The world's unique id: made here (one process, or process 0), else received from process 0.
ncclUniqueId world_unique_id(const WorldPlan& plan, double timeout_s) {
  if (!plan.launcher) return nccl_unique_id();
  const LauncherEnv& env = *plan.launcher;
  if (env.rank == 0) {
    const ncclUniqueId id = nccl_unique_id();
    if (env.world_size > 1) {
      BootstrapServer server(env.port);
      std::vector<uint8_t> bytes(sizeof id);
      std::memcpy(bytes.data(), &id, sizeof id);
      server.serve(bytes, env.world_size, timeout_s);
    }
    return id;
  }
  const std::vector<uint8_t> bytes =
      bootstrap_receive(env.master_addr, env.port, env.rank, env.world_size, timeout_s);
  ncclUniqueId id{};
  MOE_CHECK(bytes.size() == sizeof id, Nccl, "", "",
            "NCCL bootstrap: process 0 sent " + std::to_string(bytes.size()) +
                " bytes for the unique id, this NCCL expects " + std::to_string(sizeof id) +
                " (different NCCL versions?)");
  std::memcpy(&id, bytes.data(), sizeof id);
  return id;
}

}  // namespace

NcclWorld::NcclWorld(const WorldPlan& plan, double timeout_s) : plan_(plan) {
  MOE_CHECK(timeout_s > 0, InvalidArgument, "", "", "the NCCL timeout must be positive");
  MOE_ASSERT(!plan.devices.empty() &&
             plan.process_rank + plan.devices.size() <= plan.ranks_of_member.size());
  for (size_t i = 0; i < plan.devices.size(); ++i) {
    auto m = std::make_unique<WorldMember>();
    m->member = plan.process_rank + int(i);
    m->device = plan.devices[i];
    m->ranks = plan.ranks_of_member[size_t(m->member)];
    m->wd.timeout_s = timeout_s;
    m->wd.abort_flag = &abort_;
    m->wd.who = member_name(plan, m->member, m->device);
    members_.push_back(std::move(m));
  }
  const ncclUniqueId id = world_unique_id(plan, timeout_s);
  run([&](WorldMember& m, size_t) { m.comm.init(id, plan_.world_size, m.member, m.wd); });
}

NcclWorld::~NcclWorld() {
  // Finalizing waits for the whole world to be quiet, so the members close side by side.
  std::vector<std::thread> threads;
  for (auto& m : members_)
    threads.emplace_back([&m] {
      cudaSetDevice(m->device);
      m->comm.close(10.0);
    });
  for (auto& t : threads) t.join();
}

void NcclWorld::run(const std::function<void(WorldMember&, size_t)>& fn) {
  const size_t n = members_.size();
  std::vector<std::exception_ptr> errors(n);
  std::vector<char> secondary(n, 0);
  auto body = [&](size_t i) {
    WorldMember& m = *members_[i];
    try {
      cuda_check(cudaSetDevice(m.device), m.wd.who + ": cudaSetDevice");
      fn(m, i);
    } catch (const PeerAborted&) {
      errors[i] = std::current_exception();
      secondary[i] = 1;
      abort_ = true;
    } catch (const Error& e) {
      // Name the GPU in errors that come from shared code (shard checks, CUDA calls).
      errors[i] = e.detail().rfind(m.wd.who, 0) == 0
                      ? std::current_exception()
                      : std::make_exception_ptr(
                            Error(e.code(), e.file(), e.tensor(), m.wd.who + ": " + e.detail()));
      abort_ = true;
    } catch (...) {
      errors[i] = std::current_exception();
      abort_ = true;
    }
  };
  std::vector<std::thread> threads;
  for (size_t i = 0; i < n; ++i) threads.emplace_back(body, i);
  for (auto& t : threads) t.join();

  std::exception_ptr first, first_real;
  for (size_t i = 0; i < n; ++i) {
    if (!errors[i]) continue;
    if (!first) first = errors[i];
    if (!secondary[i] && !first_real) first_real = errors[i];
  }
  if (!first) return;
  broken_ = true;
  for (auto& m : members_) m->comm.abort();
  std::rethrow_exception(first_real ? first_real : first);
}

}  // namespace moe
