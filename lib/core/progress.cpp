#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace moe {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) {
    b /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", b, units[u]);
  return buf;
}

Progress::Progress(std::string label, uint64_t total_bytes, bool quiet)
    : label_(std::move(label)),
      total_(total_bytes),
      enabled_(!quiet && isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() { finish(); }

void Progress::add(uint64_t bytes) {
  done_ += bytes;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock() || now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw(false);
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (enabled_) draw(true);
}

void Progress::draw(bool final_line) {
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double done = static_cast<double>(done_.load());
  double rate = secs > 0 ? done / secs : 0;
  double pct = total_ ? 100.0 * done / static_cast<double>(total_) : 100.0;
  double eta = rate > 0 && total_ > done ? (static_cast<double>(total_) - done) / rate : 0;
  std::fprintf(stderr, "\r%s %5.1f%%  %s / %s  %s/s  ETA %.0fs\033[K%s", label_.c_str(), pct,
               human_bytes(done).c_str(), human_bytes(static_cast<double>(total_)).c_str(),
               human_bytes(rate).c_str(), eta, final_line ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace moe
