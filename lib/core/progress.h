// A one-line progress display on stderr (bytes, rate, ETA), drawn only when stderr is a
// terminal and the caller did not ask for quiet. Thread-safe: workers call add() from any thread.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace moe {

class Progress {
 public:
  Progress(std::string label, uint64_t total_bytes, bool quiet);
  ~Progress();  // finishes the line
  void add(uint64_t bytes);
  void finish();
  bool enabled() const { return enabled_; }

 private:
  void draw(bool final_line);
  std::string label_;
  uint64_t total_;
  std::atomic<uint64_t> done_{0};
  bool enabled_;
  bool finished_ = false;
  std::mutex mu_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string human_bytes(double bytes);  // "1.5 GiB"

}  // namespace moe
