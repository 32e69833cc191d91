#include "core/tensor_view.h"

#include <cstring>
#include <limits>

#include "core/error.h"

namespace moe {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

MatrixView MatrixView::row_block(int64_t begin, int64_t count) const {
  MOE_ASSERT(begin >= 0 && count >= 0 && begin + count <= rows);
  MatrixView v = *this;
  v.data = data + begin * row_stride * elem_bytes();
  v.rows = count;
  return v;
}

MatrixView MatrixView::col_block(int64_t begin, int64_t count) const {
  MOE_ASSERT(begin >= 0 && count >= 0 && begin + count <= cols);
  MatrixView v = *this;
  v.data = data + begin * col_stride * elem_bytes();
  v.cols = count;
  return v;
}

MatrixView MatrixView::every_other_row(int64_t first) const {
  MOE_ASSERT(first == 0 || first == 1);
  MatrixView v = *this;
  v.data = data + first * row_stride * elem_bytes();
  v.rows = (rows - first + 1) / 2;
  v.row_stride = row_stride * 2;
  return v;
}

MatrixView as_matrix(const TensorView& t) {
  MOE_ASSERT(dtype_bits(t.dtype) % 8 == 0);
  if (t.shape.size() == 1) return {t.data, t.dtype, 1, t.shape[0], t.shape[0], 1};
  MOE_ASSERT(t.shape.size() == 2);
  return {t.data, t.dtype, t.shape[0], t.shape[1], t.shape[1], 1};
}

MatrixView slice3(const TensorView& t, int64_t i) {
  MOE_ASSERT(t.shape.size() == 3 && i >= 0 && i < t.shape[0]);
  MOE_ASSERT(dtype_bits(t.dtype) % 8 == 0);
  int64_t r = t.shape[1], c = t.shape[2];
  return {t.data + i * r * c * (dtype_bits(t.dtype) / 8), t.dtype, r, c, c, 1};
}

void gather(const MatrixView& v, uint8_t* dst) {
  const int eb = v.elem_bytes();
  if (v.contiguous_rows()) {
    const size_t row_bytes = static_cast<size_t>(v.cols) * eb;
    for (int64_t r = 0; r < v.rows; ++r) std::memcpy(dst + r * row_bytes, v.ptr(r, 0), row_bytes);
    return;
  }
  // Strided columns (a transposed view): walk source rows in order for locality.
  for (int64_t r = 0; r < v.rows; ++r)
    for (int64_t c = 0; c < v.cols; ++c)
      std::memcpy(dst + (r * v.cols + c) * eb, v.ptr(r, c), eb);
}

void to_float(const MatrixView& v, float* dst) {
  auto decode = dtype_traits(v.dtype).decode;
  MOE_ASSERT(decode != nullptr);
  for (int64_t r = 0; r < v.rows; ++r)
    for (int64_t c = 0; c < v.cols; ++c)
      dst[r * v.cols + c] = static_cast<float>(decode(v.data, r * v.row_stride + c * v.col_stride));
}

}  // namespace moe
