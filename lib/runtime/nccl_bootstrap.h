// The NCCL unique id of a multi-process run, handed from process 0 to every other process over
// plain TCP at MASTER_ADDR:MASTER_PORT, every step bounded by one deadline. It moves opaque bytes
// (no NCCL types), so it builds and is tested without NCCL or a GPU.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

// Process 0's side: listens on `port` (0 = any free port; port() says which) on every address.
class BootstrapServer {
 public:
  explicit BootstrapServer(int port);
  ~BootstrapServer();
  BootstrapServer(const BootstrapServer&) = delete;
  BootstrapServer& operator=(const BootstrapServer&) = delete;
  int port() const { return port_; }
  // Sends `payload` to each of the world_size - 1 other processes as it says hello (its rank and
  // world size are checked). Returns once all have it; throws Error{Nccl} naming the ranks that
  // never came when `timeout_s` passes, or on a hello that does not match.
  void serve(const std::vector<uint8_t>& payload, int world_size, double timeout_s);

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Another process's side: connects to host:port (retrying while process 0 is not yet listening),
// says hello as `rank` of `world_size`, and returns the payload. Throws Error{Nccl} on timeout.
std::vector<uint8_t> bootstrap_receive(const std::string& host, int port, int rank, int world_size,
                                       double timeout_s);

}  // namespace moe
