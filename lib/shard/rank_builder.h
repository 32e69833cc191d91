// What one rank's shard holds for one MoE layer (docs/shard-format.md), as a list of tensors
// each described by row segments over source views: the single code path that both the writer
// (convert, in bounded chunks) and ShardSet::from_checkpoint (whole tensors in memory) use.
// Building reads headers only; fill() is the pure gather that copies bytes.
#pragma once
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/tensor_view.h"
#include "io/checkpoint.h"
#include "mapping/expert_mapping.h"
#include "plan/plan.h"

namespace moe {

// `rows` output rows whose first src.rows rows hold src's elements (left-aligned); the rest of
// each row and the rows past src.rows are zero. src.data == nullptr (or 0 rows) -> all zeros.
struct Segment {
  int64_t rows = 0;
  MatrixView src;
  bool from_source = false;  // src points into the checkpoint's mapped files
};

// One output tensor, seen as num_rows() rows of row_bytes bytes.
class TensorBuild {
 public:
  TensorBuild(std::string name, DType dtype, Shape shape, uint64_t row_bytes);
  void add(int64_t rows, const MatrixView& src, bool from_source);
  void add_zeros(int64_t rows);

  const std::string& name() const { return name_; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  uint64_t row_bytes() const { return row_bytes_; }
  int64_t num_rows() const { return total_rows_; }
  uint64_t nbytes() const { return static_cast<uint64_t>(total_rows_) * row_bytes_; }
  const std::vector<Segment>& segments() const { return segments_; }

  // Writes rows [row_begin, row_end) into dst ((row_end - row_begin) * row_bytes bytes).
  void fill(int64_t row_begin, int64_t row_end, uint8_t* dst) const;
  // For rows inside one segment: the checkpoint rows they read, as a view into the mapping
  // (rows == 0 when they read none: padding, zeros, literal data). The writer copies those
  // bytes out with pread (source_reader.h) and then calls fill_from with the copy.
  MatrixView source_rows(int64_t row_begin, int64_t row_end) const;
  // fill() for rows inside one segment, reading the source from `staged`: the matrix
  // source_rows(row_begin, row_end) returned, held elsewhere (ignored when that had no rows).
  void fill_from(int64_t row_begin, int64_t row_end, const MatrixView& staged, uint8_t* dst) const;
  // When rows [row_begin, row_end) are one contiguous source span with no padding (the common
  // case: a TP slice of gate/up, a whole expert at TP 1), that span; else nullptr. The writer
  // then reads it in one pread straight into the output buffer, no gather.
  const uint8_t* direct_span(int64_t row_begin, int64_t row_end) const;
  // First output row of each segment (the writer cuts chunks at these boundaries).
  const std::vector<int64_t>& segment_starts() const { return starts_; }

  // Literal data (the maps) that segments point into; kept alive with the build.
  std::shared_ptr<std::vector<uint8_t>> owned;

 private:
  std::string name_;
  DType dtype_;
  Shape shape_;
  uint64_t row_bytes_;
  int64_t total_rows_ = 0;
  std::vector<Segment> segments_;
  std::vector<int64_t> starts_;  // first output row of each segment

  size_t segment_of(int64_t row) const;
  // Segment-local rows [a, b) of `seg` into dst; `src` holds the segment's source rows from
  // segment row `first` on (seg.src itself with first = 0, or a staged copy).
  void fill_segment(const Segment& seg, const MatrixView& src, int64_t first, int64_t a, int64_t b,
                    uint8_t* dst) const;
};

// The tensor names of a rank file, `layers.{L}.<name>`.
std::string shard_tensor_name(int layer, const char* name);

// Throws UnsupportedQuantization for a quantized checkpoint, MissingTensor / ShapeMismatch /
// DTypeMismatch naming the source tensor.
std::vector<TensorBuild> build_rank_layer(const ExpertMapping& mapping, const ModelProfile& profile,
                                          const Plan& plan, int rank, int layer);

// Rejects what convert cannot take yet (quantized checkpoints), before any work.
void check_convertible(const ModelProfile& profile, const std::string& config_path);

// The tensors of `ckpt` that belong to no MoE layer of `profile`, unchanged, sorted by name.
std::vector<TensorBuild> build_non_moe(const Checkpoint& ckpt, const ModelProfile& profile,
                                       const ExpertMapping& mapping);

}  // namespace moe
