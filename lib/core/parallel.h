// Minimal data parallelism: run fn(i) for i in [0, n) on up to `threads` std::threads, dynamic
// scheduling. The first exception thrown by any task is rethrown on the caller's thread after
// all workers stop taking new work.
#pragma once
#include <cstdint>
#include <functional>

namespace moe {

int default_threads();  // hardware concurrency, at least 1
void parallel_for(int64_t n, int threads, const std::function<void(int64_t)>& fn);

}  // namespace moe
