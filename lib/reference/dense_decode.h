// Fast decoding of dense stored weights (BF16 / F16 / F32, any strided MatrixView) to float32,
// used by the reference and the CPU backend. core's to_float() goes through a function pointer
// per element; full-size expert checks decode gigabytes, so the common types get typed loops.
#pragma once
#include <vector>

#include "core/tensor_view.h"

namespace moe {

// A decoded [rows, cols] row-major float32 matrix.
struct DenseMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<float> data;
  float* row(int64_t r) { return data.data() + r * cols; }
  const float* row(int64_t r) const { return data.data() + r * cols; }
};

// Whether decode_dense() handles this dtype exactly (a plain float type of 8 bits or more whose
// value is the stored value: no scale needed).
bool is_dense_float(DType t);

// Decodes v into dst (v.rows * v.cols floats, row-major). `file`/`tensor` name the source in
// errors (a dtype that is not a plain float: UnsupportedQuantization).
void decode_dense(const MatrixView& v, float* dst, const std::string& file,
                  const std::string& tensor);
DenseMatrix decode_dense(const MatrixView& v, const std::string& file, const std::string& tensor);
// Into `into`, reusing its buffer when large enough.
void decode_dense(const MatrixView& v, DenseMatrix& into, const std::string& file,
                  const std::string& tensor);
// Sets the shape, keeping the buffer (no zeroing of what is already there).
void reshape(DenseMatrix& m, int64_t rows, int64_t cols);

}  // namespace moe
