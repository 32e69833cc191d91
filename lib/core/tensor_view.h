// Non-owning views of tensor bytes. TensorView is a whole contiguous tensor as stored;
// MatrixView is a strided 2-D window on one (an expert's [N, K] matrix inside a fused 3-D
// tensor, its transpose, every other row, a TP slice) so mapping and slicing are pure
// index arithmetic and never copy. Ownership stays with the mapped files and buffers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace moe {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[4, 64, 192]"

// Product of dims, nullopt-free: returns -1 on overflow or a negative dim.
int64_t shape_numel(const Shape& s);

struct TensorView {
  const uint8_t* data = nullptr;  // may be unaligned (formats.md 1.1): copy before typed access
  DType dtype = DType::U8;
  Shape shape;
  uint64_t nbytes = 0;
  int64_t numel() const { return shape_numel(shape); }
  double at(int64_t flat_index) const { return dtype_traits(dtype).decode(data, flat_index); }
};

// Element (r, c) lives at element offset r * row_stride + c * col_stride from data.
// Only for types of 8 bits or more (sub-byte types are handled by their quant encodings).
struct MatrixView {
  const uint8_t* data = nullptr;
  DType dtype = DType::BF16;
  int64_t rows = 0, cols = 0;
  int64_t row_stride = 0, col_stride = 1;  // in elements

  int elem_bytes() const { return dtype_bits(dtype) / 8; }
  const uint8_t* ptr(int64_t r, int64_t c) const {
    return data + (r * row_stride + c * col_stride) * elem_bytes();
  }
  double at(int64_t r, int64_t c) const {
    return dtype_traits(dtype).decode(data, r * row_stride + c * col_stride);
  }
  MatrixView transposed() const { return {data, dtype, cols, rows, col_stride, row_stride}; }
  MatrixView row_block(int64_t begin, int64_t count) const;  // rows [begin, begin+count)
  MatrixView col_block(int64_t begin, int64_t count) const;  // cols [begin, begin+count)
  MatrixView every_other_row(int64_t first) const;           // rows first, first+2, ...
  bool contiguous_rows() const { return col_stride == 1; }
};

// The 2-D matrix of a contiguous tensor (rank 1 -> one row; rank 2 as is).
MatrixView as_matrix(const TensorView& t);
// Slice i of dim 0 of a contiguous rank-3 tensor, as a matrix.
MatrixView slice3(const TensorView& t, int64_t i);

// Copies a view's elements, row-major, into dst (rows * cols * elem_bytes bytes), keeping the
// dtype: the lossless gather used by convert.
void gather(const MatrixView& v, uint8_t* dst);
// Decodes a view to float (row-major).
void to_float(const MatrixView& v, float* dst);

}  // namespace moe
