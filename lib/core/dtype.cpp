#include "core/dtype.h"

#include <array>
#include <cmath>
#include <cstring>
#include <limits>

namespace moe {

float bf16_to_f32(uint16_t v) {
  uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = (h >> 15) & 1u, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  float mag;
  if (exp == 0) mag = std::ldexp(static_cast<float>(man), -24);
  else if (exp == 31) mag = man ? std::numeric_limits<float>::quiet_NaN()
                                : std::numeric_limits<float>::infinity();
  else mag = std::ldexp(static_cast<float>(man | 0x400u), static_cast<int>(exp) - 25);
  return sign ? -mag : mag;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t au = u & 0x7fffffffu;
  if (au > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);
  if (au >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (au < 0x38800000u) {  // subnormal or zero in f16: round(|f| * 2^24)
    float af;
    std::memcpy(&af, &au, 4);
    float q = std::nearbyint(af * 16777216.0f);  // default rounding mode: nearest even
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(q));
  }
  uint32_t mant = au & 0x7fffffu;
  uint32_t exp = (au >> 23) - 112;
  uint32_t h = (exp << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

namespace {

// Generic small-float decode: e exponent bits, m mantissa bits, bias; `nan_kind` picks specials.
enum class Specials { Ieee, FnNanOnlyAllOnes, Fnuz };
float small_float(uint8_t v, int e_bits, int m_bits, int bias, Specials sp) {
  int total = 1 + e_bits + m_bits;
  uint32_t sign = (v >> (total - 1)) & 1u;
  uint32_t exp = (v >> m_bits) & ((1u << e_bits) - 1);
  uint32_t man = v & ((1u << m_bits) - 1);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  if (sp == Specials::Fnuz && v == 0x80) return nan;
  if (sp == Specials::FnNanOnlyAllOnes && exp == (1u << e_bits) - 1 && man == (1u << m_bits) - 1)
    return nan;
  if (sp == Specials::Ieee && exp == (1u << e_bits) - 1)
    return man ? nan : (sign ? -std::numeric_limits<float>::infinity()
                             : std::numeric_limits<float>::infinity());
  float mag = exp == 0 ? std::ldexp(static_cast<float>(man), 1 - bias - m_bits)
                       : std::ldexp(static_cast<float>(man | (1u << m_bits)),
                                    static_cast<int>(exp) - bias - m_bits);
  return sign ? -mag : mag;
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

double dec_bool(const uint8_t* b, int64_t i) { return b[i] ? 1.0 : 0.0; }
double dec_u8(const uint8_t* b, int64_t i) { return b[i]; }
double dec_i8(const uint8_t* b, int64_t i) { return static_cast<int8_t>(b[i]); }
double dec_e5m2(const uint8_t* b, int64_t i) { return fp8_e5m2_to_f32(b[i]); }
double dec_e4m3(const uint8_t* b, int64_t i) { return fp8_e4m3_to_f32(b[i]); }
double dec_e8m0(const uint8_t* b, int64_t i) { return e8m0_to_f32(b[i]); }
double dec_e4m3fnuz(const uint8_t* b, int64_t i) { return fp8_e4m3fnuz_to_f32(b[i]); }
double dec_e5m2fnuz(const uint8_t* b, int64_t i) { return fp8_e5m2fnuz_to_f32(b[i]); }
double dec_i16(const uint8_t* b, int64_t i) { return load<int16_t>(b + 2 * i); }
double dec_u16(const uint8_t* b, int64_t i) { return load<uint16_t>(b + 2 * i); }
double dec_f16(const uint8_t* b, int64_t i) { return f16_to_f32(load<uint16_t>(b + 2 * i)); }
double dec_bf16(const uint8_t* b, int64_t i) { return bf16_to_f32(load<uint16_t>(b + 2 * i)); }
double dec_i32(const uint8_t* b, int64_t i) { return load<int32_t>(b + 4 * i); }
double dec_u32(const uint8_t* b, int64_t i) { return load<uint32_t>(b + 4 * i); }
double dec_f32(const uint8_t* b, int64_t i) { return load<float>(b + 4 * i); }
double dec_f64(const uint8_t* b, int64_t i) { return load<double>(b + 8 * i); }
double dec_i64(const uint8_t* b, int64_t i) { return static_cast<double>(load<int64_t>(b + 8 * i)); }
double dec_u64(const uint8_t* b, int64_t i) { return static_cast<double>(load<uint64_t>(b + 8 * i)); }
double dec_f4(const uint8_t* b, int64_t i) {  // element 2j low nibble, 2j+1 high (formats.md 5.3)
  uint8_t byte = b[i / 2];
  return e2m1_to_f32((i & 1) ? (byte >> 4) : (byte & 15));
}

constexpr std::array<DTypeTraits, static_cast<size_t>(DType::kCount)> kTraits = {{
    {DType::BOOL, "BOOL", 8, false, dec_bool},
    {DType::U8, "U8", 8, false, dec_u8},
    {DType::I8, "I8", 8, false, dec_i8},
    {DType::F8_E5M2, "F8_E5M2", 8, true, dec_e5m2},
    {DType::F8_E4M3, "F8_E4M3", 8, true, dec_e4m3},
    {DType::F8_E8M0, "F8_E8M0", 8, true, dec_e8m0},
    {DType::F8_E4M3FNUZ, "F8_E4M3FNUZ", 8, true, dec_e4m3fnuz},
    {DType::F8_E5M2FNUZ, "F8_E5M2FNUZ", 8, true, dec_e5m2fnuz},
    {DType::I16, "I16", 16, false, dec_i16},
    {DType::U16, "U16", 16, false, dec_u16},
    {DType::F16, "F16", 16, true, dec_f16},
    {DType::BF16, "BF16", 16, true, dec_bf16},
    {DType::I32, "I32", 32, false, dec_i32},
    {DType::U32, "U32", 32, false, dec_u32},
    {DType::F32, "F32", 32, true, dec_f32},
    {DType::C64, "C64", 64, false, nullptr},
    {DType::F64, "F64", 64, true, dec_f64},
    {DType::I64, "I64", 64, false, dec_i64},
    {DType::U64, "U64", 64, false, dec_u64},
    {DType::F4, "F4", 4, true, dec_f4},
    {DType::F6_E2M3, "F6_E2M3", 6, true, nullptr},
    {DType::F6_E3M2, "F6_E3M2", 6, true, nullptr},
}};

constexpr bool table_matches_enum() {
  for (size_t i = 0; i < kTraits.size(); ++i)
    if (static_cast<size_t>(kTraits[i].dtype) != i) return false;
  return true;
}
static_assert(table_matches_enum(), "kTraits rows must follow the DType enum order");

}  // namespace

float fp8_e4m3_to_f32(uint8_t v) { return small_float(v, 4, 3, 7, Specials::FnNanOnlyAllOnes); }
float fp8_e5m2_to_f32(uint8_t v) { return small_float(v, 5, 2, 15, Specials::Ieee); }
float fp8_e4m3fnuz_to_f32(uint8_t v) { return small_float(v, 4, 3, 8, Specials::Fnuz); }
float fp8_e5m2fnuz_to_f32(uint8_t v) { return small_float(v, 5, 2, 16, Specials::Fnuz); }
float e8m0_to_f32(uint8_t v) {
  return v == 0xff ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, int(v) - 127);
}
float e2m1_to_f32(uint8_t nibble) {
  static constexpr float kE2M1[16] = {0.f,  0.5f,  1.f,  1.5f,  2.f,  3.f,  4.f,  6.f,
                                      -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};
  return kE2M1[nibble & 15];
}

const DTypeTraits& dtype_traits(DType t) { return kTraits[static_cast<size_t>(t)]; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& row : kTraits)
    if (name == row.name) return row.dtype;
  return std::nullopt;
}

std::optional<uint64_t> dtype_bytes(DType t, uint64_t n) {
  uint64_t bits = static_cast<uint64_t>(dtype_bits(t));
  if (n != 0 && bits > std::numeric_limits<uint64_t>::max() / n) return std::nullopt;
  uint64_t total = n * bits;
  if (total % 8) return std::nullopt;
  return total / 8;
}

}  // namespace moe
