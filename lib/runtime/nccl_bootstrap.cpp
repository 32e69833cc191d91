#include "runtime/nccl_bootstrap.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <set>
#include <thread>

#include "core/error.h"
#include "runtime/poll_wait.h"

namespace moe {

namespace {

using Clock = PollClock;

// Wire format, big-endian u32 words. hello: magic, version, rank, world_size.
// reply: magic, status, payload length, then the payload.
constexpr uint32_t kMagic = 0x4d4f4542;  // "MOEB"
constexpr uint32_t kVersion = 1;
constexpr uint32_t kMaxPayload = 1 << 16;

enum class Status : uint32_t { Ok, WorldMismatch, BadRank, DuplicateRank, VersionMismatch, Count };
constexpr const char* kStatusText[] = {"ok", "WORLD_SIZE differs from process 0's",
                                       "rank out of range", "another process has this rank",
                                       "another protocol version (mixed moe-tool builds?)"};
static_assert(sizeof(kStatusText) / sizeof(kStatusText[0]) == size_t(Status::Count),
              "one text per Status");

[[noreturn]] void bootstrap_fail(const std::string& where, const std::string& detail) {
  fail(ErrorCode::Nccl, "", "", "NCCL bootstrap at " + where + ": " + detail);
}

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return int(std::max<int64_t>(0, std::min<int64_t>(left.count(), 1 << 30)));
}

// Closes a socket at scope exit.
struct Socket {
  int fd = -1;
  explicit Socket(int f) : fd(f) {}
  ~Socket() {
    if (fd >= 0) ::close(fd);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
};

// Waits until fd is ready for `events`; false on timeout.
bool wait_ready(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

// Whole-buffer send / receive on a non-blocking socket; false on timeout, a closed peer or an
// error.
bool send_all(int fd, const uint8_t* p, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= size_t(w);
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (!wait_ready(fd, POLLOUT, deadline)) return false;
    } else {
      return false;
    }
  }
  return true;
}

bool recv_all(int fd, uint8_t* p, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r > 0) {
      p += r;
      n -= size_t(r);
    } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (!wait_ready(fd, POLLIN, deadline)) return false;
    } else {
      return false;  // 0: the peer closed
    }
  }
  return true;
}

void put_u32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 24);
  p[1] = uint8_t(v >> 16);
  p[2] = uint8_t(v >> 8);
  p[3] = uint8_t(v);
}
uint32_t get_u32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

std::string missing_ranks(const std::set<int>& pending) {
  std::string s;
  int shown = 0;
  for (int r : pending) {
    if (shown++ == 8) {
      s += ", ...";
      break;
    }
    s += (s.empty() ? "" : ", ") + std::to_string(r);
  }
  return s;
}

// One non-blocking connect attempt to any address of host:port; -1 when none answered.
int try_connect(const std::string& host, int port, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res)
    return -1;
  int connected = -1;
  for (addrinfo* a = res; a && connected < 0; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    set_nonblocking(fd);
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc < 0 && errno == EINPROGRESS) {
      // At most a second per attempt, so a refused or lost SYN is retried.
      const auto attempt = std::min(deadline, Clock::now() + std::chrono::seconds(1));
      int err = ETIMEDOUT;
      socklen_t len = sizeof err;
      if (wait_ready(fd, POLLOUT, attempt)) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
    }
    if (rc == 0)
      connected = fd;
    else
      ::close(fd);
  }
  ::freeaddrinfo(res);
  return connected;
}

}  // namespace

BootstrapServer::BootstrapServer(int port) {
  const std::string where = "port " + std::to_string(port);
  MOE_CHECK(port >= 0 && port <= 65535, InvalidArgument, "", "",
            "NCCL bootstrap port " + std::to_string(port) + " is not within 0..65535");
  // IPv6 socket accepting IPv4 too; falls back to IPv4 where IPv6 is off.
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool v6 = fd >= 0;
  if (!v6) fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) bootstrap_fail(where, std::string("socket(): ") + std::strerror(errno));
  fd_ = fd;
  const int one = 1, zero = 0;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc;
  if (v6) {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(uint16_t(port));
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(uint16_t(port));
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd_);
    fd_ = -1;
    bootstrap_fail(where, "bind(): " + why +
                              (errno == EADDRINUSE ? " (another program holds the port: set "
                                                     "MOE_NCCL_BOOTSTRAP_PORT to a free one)"
                                                   : ""));
  }
  if (::listen(fd, 128) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd_);
    fd_ = -1;
    bootstrap_fail(where, "listen(): " + why);
  }
  set_nonblocking(fd);
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

BootstrapServer::~BootstrapServer() {
  if (fd_ >= 0) ::close(fd_);
}

void BootstrapServer::serve(const std::vector<uint8_t>& payload, int world_size, double timeout_s) {
  const std::string where = "port " + std::to_string(port_) + " (process 0)";
  MOE_CHECK(world_size >= 1, InvalidArgument, "", "", "NCCL bootstrap: world size < 1");
  MOE_CHECK(payload.size() <= kMaxPayload, Internal, "", "", "NCCL bootstrap payload too large");
  const auto deadline = deadline_after(timeout_s);
  std::set<int> pending;
  for (int r = 1; r < world_size; ++r) pending.insert(r);
  while (!pending.empty()) {
    if (!wait_ready(fd_, POLLIN, deadline))
      bootstrap_fail(where, std::to_string(pending.size()) + " of " +
                                std::to_string(world_size - 1) +
                                " processes did not connect within " + seconds_str(timeout_s) +
                                " s (missing ranks " + missing_ranks(pending) +
                                "; check that every process started with the same MASTER_ADDR, "
                                "MASTER_PORT and WORLD_SIZE)");
    const int cfd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (cfd < 0) continue;  // EAGAIN (a connection that went away), EINTR
    Socket peer(cfd);
    uint8_t hello[16];
    // A connection that is not ours (no magic, or silent) is dropped; the others keep waiting.
    const auto hello_deadline = std::min(deadline, Clock::now() + std::chrono::seconds(5));
    if (!recv_all(cfd, hello, sizeof hello, hello_deadline) || get_u32(hello) != kMagic) continue;
    const uint32_t version = get_u32(hello + 4);
    const int rank = int(get_u32(hello + 8));
    const int peer_world = int(get_u32(hello + 12));
    Status st = Status::Ok;
    if (version != kVersion)
      st = Status::VersionMismatch;
    else if (peer_world != world_size)
      st = Status::WorldMismatch;
    else if (rank < 1 || rank >= world_size)
      st = Status::BadRank;
    else if (!pending.count(rank))
      st = Status::DuplicateRank;
    uint8_t reply[12];
    put_u32(reply, kMagic);
    put_u32(reply + 4, uint32_t(st));
    put_u32(reply + 8, st == Status::Ok ? uint32_t(payload.size()) : 0u);
    const bool sent = send_all(cfd, reply, sizeof reply, deadline) &&
                      (st != Status::Ok || send_all(cfd, payload.data(), payload.size(), deadline));
    if (st != Status::Ok)
      bootstrap_fail(where, "rank " + std::to_string(rank) + " says WORLD_SIZE " +
                                std::to_string(peer_world) + ": " + kStatusText[uint32_t(st)] +
                                " (WORLD_SIZE " + std::to_string(world_size) + ")");
    if (sent) pending.erase(rank);
  }
}

std::vector<uint8_t> bootstrap_receive(const std::string& host, int port, int rank, int world_size,
                                       double timeout_s) {
  const std::string where =
      host + ":" + std::to_string(port) + " (rank " + std::to_string(rank) + ")";
  MOE_CHECK(rank >= 1 && rank < world_size, InvalidArgument, "", "",
            "NCCL bootstrap: rank " + std::to_string(rank) + " of world size " +
                std::to_string(world_size) + " cannot receive (process 0 serves)");
  const auto deadline = deadline_after(timeout_s);
  int fd = -1;
  while ((fd = try_connect(host, port, deadline)) < 0) {
    if (Clock::now() >= deadline)
      bootstrap_fail(where, "process 0 did not answer within " + seconds_str(timeout_s) +
                                " s (is it running, and is MASTER_ADDR reachable from here?)");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  Socket sock(fd);
  uint8_t hello[16];
  put_u32(hello, kMagic);
  put_u32(hello + 4, kVersion);
  put_u32(hello + 8, uint32_t(rank));
  put_u32(hello + 12, uint32_t(world_size));
  uint8_t reply[12];
  if (!send_all(fd, hello, sizeof hello, deadline) ||
      !recv_all(fd, reply, sizeof reply, deadline) || get_u32(reply) != kMagic)
    bootstrap_fail(where, "no valid answer from process 0 within " + seconds_str(timeout_s) +
                              " s (another program on that port?)");
  const uint32_t st = get_u32(reply + 4), n = get_u32(reply + 8);
  if (st != uint32_t(Status::Ok))
    bootstrap_fail(where, std::string("process 0 refused this process: ") +
                              (st < uint32_t(Status::Count) ? kStatusText[st] : "unknown status"));
  MOE_CHECK(n <= kMaxPayload, Nccl, "", "", "NCCL bootstrap at " + where + ": payload too large");
  std::vector<uint8_t> payload(n);
  if (!recv_all(fd, payload.data(), n, deadline))
    bootstrap_fail(where, "the unique id was cut short");
  return payload;
}

}  // namespace moe
