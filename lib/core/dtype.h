// The element types of safetensors (formats.md section 1.3) as one table of traits, as ggml's
// type_traits: code asks the table (name, bits, float decode) instead of switching on the type.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace moe {

enum class DType : uint8_t {
  BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ,
  I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64, F4, F6_E2M3, F6_E3M2,
  kCount
};

// Decodes element i of a packed array to float (nullptr where the type is not a real number
// we decode, e.g. C64). Exact for every type (all fit in double; F32 and narrower fit in float).
using DecodeFn = double (*)(const uint8_t* base, int64_t i);

struct DTypeTraits {
  DType dtype;
  const char* name;   // the safetensors header string
  int bits;           // bits per element
  bool is_float;      // a floating-point type (incl. fp8/fp4/fp6/e8m0)
  DecodeFn decode;    // element -> double, or nullptr
};

const DTypeTraits& dtype_traits(DType t);
inline const char* dtype_name(DType t) { return dtype_traits(t).name; }
inline int dtype_bits(DType t) { return dtype_traits(t).bits; }
std::optional<DType> dtype_from_name(std::string_view name);

// Byte size of n elements; nullopt when n * bits is not a whole number of bytes or overflows.
std::optional<uint64_t> dtype_bytes(DType t, uint64_t n);

// Scalar float encodings, formats.md section 10. Exact conversions.
float bf16_to_f32(uint16_t v);
float f16_to_f32(uint16_t v);
uint16_t f32_to_bf16(float f);  // round to nearest even; NaN stays NaN
uint16_t f32_to_f16(float f);   // round to nearest even
float fp8_e4m3_to_f32(uint8_t v);
float fp8_e5m2_to_f32(uint8_t v);
float fp8_e4m3fnuz_to_f32(uint8_t v);
float fp8_e5m2fnuz_to_f32(uint8_t v);
float e8m0_to_f32(uint8_t v);
float e2m1_to_f32(uint8_t nibble);

}  // namespace moe
