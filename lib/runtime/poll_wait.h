// The pieces of every bounded host-side wait (a GPU stream or event, an NCCL operation, a
// bootstrap socket): a deadline, the pause between two polls, and how a limit reads in a message.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>

namespace moe {

using PollClock = std::chrono::steady_clock;

inline PollClock::time_point deadline_after(double seconds) {
  return PollClock::now() + std::chrono::microseconds(int64_t(std::max(0.0, seconds) * 1e6));
}

// Spins briefly (most waits end within microseconds: a layer's kernels, an all-reduce), then
// sleeps, so that a long wait does not burn a core.
inline void poll_backoff(PollClock::time_point started) {
  if (PollClock::now() - started < std::chrono::milliseconds(2))
    std::this_thread::yield();
  else
    std::this_thread::sleep_for(std::chrono::microseconds(100));
}

inline std::string seconds_str(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", s);
  return b;
}

}  // namespace moe
