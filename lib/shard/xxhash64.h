// XXH64 (Yann Collet's xxHash, 64-bit variant), written from the public specification
// (xxhash.com doc/xxhash_spec.md). Streaming, so a writer can hash bytes as it writes them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace moe {

class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void update(const void* data, size_t len);
  uint64_t digest() const;  // does not change the state; more update() calls may follow

 private:
  uint64_t acc_[4];
  uint64_t seed_;
  uint64_t total_len_ = 0;
  uint8_t buf_[32];
  size_t buf_len_ = 0;
};

uint64_t xxh64(const void* data, size_t len, uint64_t seed = 0);
std::string xxh64_hex(uint64_t h);  // 16 lowercase hex digits, as the manifest stores it
// XXH64 of a whole file (streamed with pread). Throws Error{Io} naming the file.
uint64_t xxh64_file(const std::string& path);

}  // namespace moe
