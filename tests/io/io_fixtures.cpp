#include "io/io_fixtures.h"

#include <fstream>
#include <iterator>
#include <stdexcept>

namespace moe::test {

uint64_t io_seed() {
  static const uint64_t seed = (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  return seed;
}

std::mt19937_64& io_rng() {
  static std::mt19937_64 rng(io_seed());
  return rng;
}

std::vector<uint8_t> random_bytes(size_t n) {
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(io_rng()());
  return out;
}

std::vector<uint8_t> raw_safetensors(const std::string& header, const std::vector<uint8_t>& data,
                                     std::optional<uint64_t> n) {
  const uint64_t len = n.value_or(header.size());
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(len >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

}  // namespace moe::test
