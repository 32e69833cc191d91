#include "reference/dense_decode.h"

#include <cstring>

#include "core/error.h"

namespace moe {

namespace {

// bf16 is the upper half of an f32: inline here (not core's out-of-line bf16_to_f32) so the
// compiler vectorizes the row loop; decoding is the bulk of a full-size reference check.
struct LoadBf16 {
  static float load(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    const uint32_t u = static_cast<uint32_t>(v) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};
struct LoadF16 {
  static float load(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return f16_to_f32(v);
  }
};
struct LoadF32 {
  static float load(const uint8_t* p) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
};

// Walks the source in memory order where a stride is 1 (a transposed view of an [in, out]
// tensor has row_stride 1), so large decodes stream through the mapped file.
template <typename L, int kBytes>
void decode_typed(const MatrixView& v, float* dst) {
  const uint8_t* base = v.data;
  if (v.col_stride == 1) {
    for (int64_t r = 0; r < v.rows; ++r) {
      const uint8_t* src = base + r * v.row_stride * kBytes;
      float* out = dst + r * v.cols;
      for (int64_t c = 0; c < v.cols; ++c) out[c] = L::load(src + c * kBytes);
    }
  } else if (v.row_stride == 1) {
    for (int64_t c = 0; c < v.cols; ++c) {
      const uint8_t* src = base + c * v.col_stride * kBytes;
      for (int64_t r = 0; r < v.rows; ++r) dst[r * v.cols + c] = L::load(src + r * kBytes);
    }
  } else {
    for (int64_t r = 0; r < v.rows; ++r)
      for (int64_t c = 0; c < v.cols; ++c)
        dst[r * v.cols + c] = L::load(base + (r * v.row_stride + c * v.col_stride) * kBytes);
  }
}

using DecodeDenseFn = void (*)(const MatrixView&, float*);
struct DenseRow {
  DType dtype;
  DecodeDenseFn decode;
};
// The plain float types a reference can read without a quantization scheme.
constexpr DenseRow kDenseTypes[] = {
    {DType::BF16, decode_typed<LoadBf16, 2>},
    {DType::F16, decode_typed<LoadF16, 2>},
    {DType::F32, decode_typed<LoadF32, 4>},
};

const DenseRow* find_dense(DType t) {
  for (const auto& row : kDenseTypes)
    if (row.dtype == t) return &row;
  return nullptr;
}

}  // namespace

bool is_dense_float(DType t) { return find_dense(t) != nullptr; }

void decode_dense(const MatrixView& v, float* dst, const std::string& file,
                  const std::string& tensor) {
  const DenseRow* row = find_dense(v.dtype);
  MOE_CHECK(row != nullptr, UnsupportedQuantization, file, tensor,
            std::string("dtype ") + dtype_name(v.dtype) +
                " is not a dense float encoding (BF16, F16, F32); the reference cannot decode it");
  if (v.rows == 0 || v.cols == 0) return;
  row->decode(v, dst);
}

void reshape(DenseMatrix& m, int64_t rows, int64_t cols) {
  m.rows = rows;
  m.cols = cols;
  m.data.resize(static_cast<size_t>(rows * cols));
}

DenseMatrix decode_dense(const MatrixView& v, const std::string& file, const std::string& tensor) {
  DenseMatrix m;
  decode_dense(v, m, file, tensor);
  return m;
}

void decode_dense(const MatrixView& v, DenseMatrix& into, const std::string& file,
                  const std::string& tensor) {
  reshape(into, v.rows, v.cols);
  decode_dense(v, into.data.data(), file, tensor);
}

}  // namespace moe
