// One member's NCCL communicator in non-blocking mode, and the watchdog that keeps a several-GPU
// run from hanging: every wait (init, a collective, its stream) polls the communicator's async
// error, the world's shared abort flag and a deadline, and aborts the communicator instead of
// waiting forever on a peer that died, a GPU that failed or an NCCL error. Built only with NCCL.
#pragma once
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <cstddef>
#include <string>

#include "core/error.h"

namespace moe {

// What bounds every wait: a timeout, and a flag any member raises when it fails so the others
// give up at once instead of at the timeout.
struct Watchdog {
  double timeout_s = 300;
  std::atomic<bool>* abort_flag = nullptr;
  std::string who;  // "GPU 1 (NCCL rank 1 of 2)", leads every message
};

// Thrown by a member that stopped because another member raised the abort flag: the other
// member's error is the one to report.
class PeerAborted : public Error {
 public:
  explicit PeerAborted(const std::string& who)
      : Error(ErrorCode::Nccl, "", "", who + ": stopped because another GPU of the run failed") {}
};

std::string nccl_version_string();  // "2.28.9" (the library loaded at run time)
ncclUniqueId nccl_unique_id();      // ncclGetUniqueId, checked

class NcclComm {
 public:
  NcclComm() = default;
  ~NcclComm();  // finalize and destroy (bounded), abort when that fails
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  // Joins as `rank` of `world_size` on the current CUDA device; returns when every member has
  // joined. Throws Error{Nccl} (communicator aborted) on an NCCL error, the timeout or a peer's
  // abort.
  void init(const ncclUniqueId& id, int world_size, int rank, const Watchdog& wd);
  // In-place float32 sum over the world, enqueued on `stream` (does not wait for it).
  void all_reduce_sum(float* data, size_t count, cudaStream_t stream, const Watchdog& wd);
  // recv[m * count + i] = member m's send[i].
  void all_gather(const float* send, float* recv, size_t count, cudaStream_t stream,
                  const Watchdog& wd);
  // Waits for `stream` (kernels and collectives) under the watchdog; `what` names the step.
  void wait(cudaStream_t stream, const Watchdog& wd, const std::string& what);
  // Aborts in-flight operations and frees the communicator; safe to call twice.
  void abort() noexcept;
  // Finalizes (bounded by timeout_s), then destroys; aborts instead when finalizing fails.
  void close(double timeout_s) noexcept;
  bool ok() const { return comm_ != nullptr; }

 private:
  // Polls ncclCommGetAsyncError until the last call has settled (ncclInProgress -> success).
  void settle(const Watchdog& wd, const std::string& what);
  [[noreturn]] void fail_nccl(const Watchdog& wd, const std::string& what, ncclResult_t r);
  ncclComm_t comm_ = nullptr;
  int rank_ = 0, world_size_ = 1;
};

}  // namespace moe
