// This process's members of an NCCL world (multi_gpu.h WorldPlan): per member a CUDA device, a
// communicator and a watchdog; run() gives every member a thread with its device current. A
// member that fails raises the world's abort flag so the others stop at once (PeerAborted)
// instead of waiting in a collective, and the first real error is rethrown. Built only with NCCL.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/multi_gpu.h"
#include "runtime/nccl_comm.h"

namespace moe {

struct WorldMember {
  int member = 0;          // NCCL rank
  int device = 0;          // CUDA device
  std::vector<int> ranks;  // positions in ShardSet::ranks() it runs, in order
  NcclComm comm;
  Watchdog wd;
};

class NcclWorld {
 public:
  // Gets the unique id (made here, or in launcher mode served / received over TCP by
  // nccl_bootstrap.h) and joins every local member, all under the watchdog.
  NcclWorld(const WorldPlan& plan, double timeout_s);
  ~NcclWorld();  // finalizes every communicator (members in parallel, bounded)
  NcclWorld(const NcclWorld&) = delete;
  NcclWorld& operator=(const NcclWorld&) = delete;

  const WorldPlan& plan() const { return plan_; }
  size_t size() const { return members_.size(); }  // local members
  WorldMember& member(size_t i) { return *members_[i]; }
  // After a failure every communicator is aborted and the world cannot be used again.
  bool broken() const { return broken_; }

  // fn(member, local index) for every local member at once, each on its own thread with its
  // device current. On a failure: aborts every communicator, marks the world broken, and
  // rethrows the first error that is not a PeerAborted, prefixed with the member's name.
  void run(const std::function<void(WorldMember&, size_t)>& fn);

 private:
  WorldPlan plan_;
  std::vector<std::unique_ptr<WorldMember>> members_;
  std::atomic<bool> abort_{false};
  bool broken_ = false;
};

}  // namespace moe
