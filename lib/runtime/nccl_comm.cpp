#include "runtime/nccl_comm.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "runtime/gpu_buffer.h"
#include "runtime/poll_wait.h"

namespace moe {

namespace {
using Clock = PollClock;
}  // namespace

std::string nccl_version_string() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  // NCCL >= 2.9 encodes major * 10000 + minor * 100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
         std::to_string(v % 100);
}

ncclUniqueId nccl_unique_id() {
  ncclUniqueId id{};
  const ncclResult_t r = ncclGetUniqueId(&id);
  MOE_CHECK(r == ncclSuccess, Nccl, "", "",
            std::string("ncclGetUniqueId: ") + ncclGetErrorString(r) +
                " (NCCL_SOCKET_IFNAME may need to name a usable network interface)");
  return id;
}

NcclComm::~NcclComm() { close(10.0); }

void NcclComm::fail_nccl(const Watchdog& wd, const std::string& what, ncclResult_t r) {
  std::string last = comm_ ? ncclGetLastError(comm_) : ncclGetLastError(nullptr);
  abort();
  fail(ErrorCode::Nccl, "", "",
       wd.who + ": " + what + ": " + ncclGetErrorString(r) +
           (last.empty() ? std::string() : " (" + last + ")") +
           "; communicator aborted (NCCL_DEBUG=WARN shows more)");
}

void NcclComm::settle(const Watchdog& wd, const std::string& what) {
  const auto start = Clock::now();
  const auto deadline = deadline_after(wd.timeout_s);
  for (;;) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) fail_nccl(wd, what, r);
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) fail_nccl(wd, what, state);
    if (wd.abort_flag && wd.abort_flag->load()) {
      abort();
      throw PeerAborted(wd.who);
    }
    if (Clock::now() > deadline) {
      abort();
      fail(ErrorCode::Nccl, "", "",
           wd.who + ": " + what + " did not complete within " + seconds_str(wd.timeout_s) +
               " s (a peer not started, dead or stuck?); communicator aborted");
    }
    poll_backoff(start);
  }
}

void NcclComm::init(const ncclUniqueId& id, int world_size, int rank, const Watchdog& wd) {
  MOE_ASSERT(comm_ == nullptr);
  rank_ = rank;
  world_size_ = world_size;
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every call returns at once; settle() waits under the watchdog
  const ncclResult_t r = ncclCommInitRankConfig(&comm_, world_size, id, rank, &config);
  const std::string what = "joining the NCCL world (ncclCommInitRankConfig, rank " +
                           std::to_string(rank) + " of " + std::to_string(world_size) + ")";
  if (r != ncclSuccess && r != ncclInProgress) {
    if (comm_) fail_nccl(wd, what, r);
    fail(ErrorCode::Nccl, "", "", wd.who + ": " + what + ": " + ncclGetErrorString(r));
  }
  settle(wd, what);
}

void NcclComm::all_reduce_sum(float* data, size_t count, cudaStream_t stream, const Watchdog& wd) {
  MOE_CHECK(comm_ != nullptr, Nccl, "", "", wd.who + ": the communicator was aborted earlier");
  const ncclResult_t r = ncclAllReduce(data, data, count, ncclFloat32, ncclSum, comm_, stream);
  if (r != ncclSuccess && r != ncclInProgress) fail_nccl(wd, "ncclAllReduce", r);
  settle(wd, "enqueuing ncclAllReduce");
}

void NcclComm::all_gather(const float* send, float* recv, size_t count, cudaStream_t stream,
                          const Watchdog& wd) {
  MOE_CHECK(comm_ != nullptr, Nccl, "", "", wd.who + ": the communicator was aborted earlier");
  const ncclResult_t r = ncclAllGather(send, recv, count, ncclFloat32, comm_, stream);
  if (r != ncclSuccess && r != ncclInProgress) fail_nccl(wd, "ncclAllGather", r);
  settle(wd, "enqueuing ncclAllGather");
}

void NcclComm::wait(cudaStream_t stream, const Watchdog& wd, const std::string& what) {
  const auto start = Clock::now();
  const auto deadline = deadline_after(wd.timeout_s);
  for (;;) {
    const cudaError_t e = cudaStreamQuery(stream);
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) {
      abort();
      cuda_check(e, wd.who + ": " + what);
    }
    if (comm_) {
      ncclResult_t state = ncclSuccess;
      const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
      if (r != ncclSuccess) fail_nccl(wd, what, r);
      if (state != ncclSuccess && state != ncclInProgress) fail_nccl(wd, what, state);
    }
    if (wd.abort_flag && wd.abort_flag->load()) {
      abort();
      throw PeerAborted(wd.who);
    }
    if (Clock::now() > deadline) {
      abort();
      fail(ErrorCode::Nccl, "", "",
           wd.who + ": " + what + " did not finish within " + seconds_str(wd.timeout_s) +
               " s (a peer dead or stuck, or a hung kernel?); communicator aborted");
    }
    poll_backoff(start);
  }
}

void NcclComm::abort() noexcept {
  if (!comm_) return;
  ncclCommAbort(comm_);
  comm_ = nullptr;
}

void NcclComm::close(double timeout_s) noexcept {
  if (!comm_) return;
  ncclResult_t r = ncclCommFinalize(comm_);
  const auto deadline = deadline_after(timeout_s);
  const auto start = Clock::now();
  while (r == ncclSuccess || r == ncclInProgress) {
    ncclResult_t state = ncclSuccess;
    r = ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) break;
    if (state == ncclSuccess) {
      ncclCommDestroy(comm_);
      comm_ = nullptr;
      return;
    }
    if (state != ncclInProgress || Clock::now() > deadline) break;
    poll_backoff(start);
  }
  abort();
}

}  // namespace moe
