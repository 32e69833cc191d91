#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>

#include "core/dtype.h"
#include "core/tensor_view.h"

using namespace moe;

TEST_CASE("dtype table names round-trip", "[core]") {
  for (int i = 0; i < static_cast<int>(DType::kCount); ++i) {
    auto t = static_cast<DType>(i);
    auto back = dtype_from_name(dtype_name(t));
    REQUIRE(back.has_value());
    CHECK(*back == t);
  }
  CHECK_FALSE(dtype_from_name("F8_E4M3FN").has_value());
  CHECK(dtype_bytes(DType::F4, 3) == std::nullopt);  // 12 bits is not whole bytes
  CHECK(dtype_bytes(DType::F4, 4) == 2u);
  CHECK(dtype_bytes(DType::BF16, UINT64_MAX / 4) == std::nullopt);
}

TEST_CASE("fp8 e4m3 decodes the known corners", "[core]") {
  CHECK(fp8_e4m3_to_f32(0x7e) == 448.0f);
  CHECK(fp8_e4m3_to_f32(0x01) == std::ldexp(1.0f, -9));  // smallest subnormal
  CHECK(fp8_e4m3_to_f32(0x38) == 1.0f);
  CHECK(std::isnan(fp8_e4m3_to_f32(0x7f)));
  CHECK(fp8_e5m2_to_f32(0x3c) == 1.0f);
  CHECK(std::isinf(fp8_e5m2_to_f32(0x7c)));
  CHECK(std::isnan(fp8_e4m3fnuz_to_f32(0x80)));
  CHECK(fp8_e4m3fnuz_to_f32(0x40) == 1.0f);
  CHECK(e8m0_to_f32(127) == 1.0f);
  CHECK(e2m1_to_f32(0x7) == 6.0f);
  CHECK(e2m1_to_f32(0xb) == -1.5f);
}

TEST_CASE("bf16 and f16 round-trip through f32 with round-to-nearest-even", "[core]") {
  std::mt19937 rng(1234);
  std::normal_distribution<float> dist(0.f, 3.f);
  for (int i = 0; i < 100000; ++i) {
    float f = dist(rng);
    float b = bf16_to_f32(f32_to_bf16(f));
    CHECK(std::fabs(b - f) <= std::fabs(f) * (1.0f / 256));
    float h = f16_to_f32(f32_to_f16(f));
    CHECK(std::fabs(h - f) <= std::fabs(f) * (1.0f / 2048) + 6e-8f);
  }
  for (uint32_t v = 0; v < 65536; ++v) {  // every finite half survives the round trip
    uint16_t h = static_cast<uint16_t>(v);
    float f = f16_to_f32(h);
    if (std::isnan(f)) continue;
    CHECK(f32_to_f16(f) == h);
    uint16_t b = static_cast<uint16_t>(v);
    float fb = bf16_to_f32(b);
    if (!std::isnan(fb)) CHECK(f32_to_bf16(fb) == b);
  }
}

TEST_CASE("matrix views slice, transpose and interleave without copying", "[core]") {
  // A [2, 3, 4] F32 tensor with value = flat index.
  std::vector<float> data(24);
  for (int i = 0; i < 24; ++i) data[i] = static_cast<float>(i);
  TensorView t{reinterpret_cast<const uint8_t*>(data.data()), DType::F32, {2, 3, 4}, 96};
  MatrixView m = slice3(t, 1);  // rows 3, cols 4, values 12..23
  CHECK(m.at(0, 0) == 12.0);
  CHECK(m.at(2, 3) == 23.0);
  MatrixView mt = m.transposed();  // [4, 3]
  CHECK(mt.rows == 4);
  CHECK(mt.at(3, 2) == 23.0);
  MatrixView odd = mt.every_other_row(1);  // rows 1 and 3 of the transpose
  CHECK(odd.rows == 2);
  CHECK(odd.at(1, 0) == m.at(0, 3));
  std::vector<float> out(odd.rows * odd.cols);
  gather(odd, reinterpret_cast<uint8_t*>(out.data()));
  CHECK(out == std::vector<float>{13, 17, 21, 15, 19, 23});
  MatrixView blk = m.col_block(1, 2).row_block(1, 1);
  CHECK(blk.at(0, 1) == 18.0);
}
