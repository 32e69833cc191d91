// Fixture builders shared by the io tests: random bytes and hand-made safetensors files (the
// exact byte layout of formats.md 1.1), so corrupt inputs are generated in code, never checked in.
#pragma once
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"

namespace moe::test {

// One seed per test process, fresh each run; tests CAPTURE it so a failure can be replayed.
uint64_t io_seed();
std::mt19937_64& io_rng();
std::vector<uint8_t> random_bytes(size_t n);

// [u64 LE n][header][data]; n defaults to header.size().
std::vector<uint8_t> raw_safetensors(const std::string& header, const std::vector<uint8_t>& data,
                                     std::optional<uint64_t> n = std::nullopt);
void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes);
std::vector<uint8_t> read_bytes(const std::string& path);

// Runs fn, which must throw moe::Error; returns it (a test failure if it does not throw).
template <typename Fn>
std::optional<Error> catch_error(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e;
  }
  return std::nullopt;
}

}  // namespace moe::test
