// XXH64 against published vectors, and streaming in arbitrary pieces equals one-shot hashing.
#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <vector>

#include "shard/xxhash64.h"
#include "support/temp_dir.h"

using namespace moe;

TEST_CASE("xxh64 matches published test vectors", "[shard][xxhash]") {
  CHECK(xxh64("", 0) == 0xEF46DB3751D8E999ULL);  // xxHash README / spec
  const char* s = "Nobody inspects the spammish repetition";  // python-xxhash docs
  CHECK(xxh64(s, std::strlen(s)) == 0xFBCEA83C8A378BF1ULL);
  CHECK(xxh64_hex(0xFBCEA83C8A378BF1ULL) == "fbcea83c8a378bf1");
  CHECK(xxh64_hex(0x1) == "0000000000000001");
}

TEST_CASE("xxh64 streaming in random pieces equals one shot; seed and bytes matter",
          "[shard][xxhash]") {
  std::mt19937_64 rng(99);
  for (size_t n : {0u, 1u, 3u, 4u, 7u, 8u, 31u, 32u, 33u, 63u, 64u, 100u, 1000u, 70001u}) {
    std::vector<uint8_t> data(n);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    uint64_t whole = xxh64(data.data(), n);
    Xxh64 st;
    size_t pos = 0;
    while (pos < n) {
      size_t take = std::min<size_t>(n - pos, rng() % 50);
      st.update(data.data() + pos, take);
      pos += take;
      if (pos > n / 2) CHECK(st.digest() == xxh64(data.data(), pos));  // digest is non-destructive
    }
    CHECK(st.digest() == whole);
    CHECK(xxh64(data.data(), n, 1) != whole);
    if (n) {
      data[rng() % n] ^= 0x10;
      CHECK(xxh64(data.data(), n) != whole);
    }
  }
}

TEST_CASE("xxh64_file hashes the file's bytes", "[shard][xxhash]") {
  test::TempDir dir;
  std::string text(20000, 'x');
  for (size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>('a' + i % 26);
  test::write_text(dir / "f.bin", text);
  CHECK(xxh64_file(dir / "f.bin") == xxh64(text.data(), text.size()));
  CHECK_THROWS(xxh64_file(dir / "missing"));
}
