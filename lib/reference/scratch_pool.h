// Reusable per-worker scratch objects for parallel_for bodies: a worker takes one for a task
// and gives it back, so large decode buffers are allocated once per worker instead of once per
// expert (fresh pages of a 60-180 MB expert cost more than decoding it).
#pragma once
#include <memory>
#include <mutex>
#include <vector>

namespace moe {

template <typename T>
class ScratchPool {
 public:
  class Lease {
   public:
    Lease(ScratchPool& pool, std::unique_ptr<T> item) : pool_(pool), item_(std::move(item)) {}
    ~Lease() { pool_.give_back(std::move(item_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    T& operator*() { return *item_; }
    T* operator->() { return item_.get(); }

   private:
    ScratchPool& pool_;
    std::unique_ptr<T> item_;
  };

  Lease take() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) return Lease(*this, std::make_unique<T>());
    std::unique_ptr<T> item = std::move(free_.back());
    free_.pop_back();
    return Lease(*this, std::move(item));
  }

 private:
  void give_back(std::unique_ptr<T> item) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(item));
  }
  std::mutex mu_;
  std::vector<std::unique_ptr<T>> free_;
};

}  // namespace moe
