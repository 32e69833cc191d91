#include "shard/source_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace moe {

SourceReader::SourceReader(const Checkpoint& ckpt) {
  for (const auto& f : ckpt.files()) {
    const int fd = ::open(f->path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      const std::string why = std::strerror(errno);
      for (auto& open_file : files_) ::close(open_file.fd);  // no destructor after a throw here
      fail(ErrorCode::Io, f->path(), "", "cannot open for reading: " + why);
    }
    files_.push_back({f->mapped().data(), f->mapped().size(), fd, f->path()});
  }
}

SourceReader::~SourceReader() {
  for (auto& f : files_) ::close(f.fd);
}

void SourceReader::read(const uint8_t* src, uint64_t n, uint8_t* dst) const {
  if (n == 0) return;
  const File* file = nullptr;
  for (const File& f : files_)
    if (f.base && src >= f.base && src + n <= f.base + f.size) {
      file = &f;
      break;
    }
  MOE_ASSERT(file != nullptr);  // every from-source segment points into a checkpoint mapping
  const uint64_t offset = static_cast<uint64_t>(src - file->base);
  uint64_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(file->fd, dst + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    MOE_CHECK(r > 0, Io, file->path, "",
              r < 0 ? "read failed at byte " + std::to_string(offset + done) + ": " + std::strerror(errno)
                    : "file ends at byte " + std::to_string(offset + done) +
                          ", before the data its header promised (changed while converting?)");
    done += static_cast<uint64_t>(r);
  }
}

uint64_t view_span_bytes(const MatrixView& v) {
  if (v.rows <= 0 || v.cols <= 0 || !v.data) return 0;
  return static_cast<uint64_t>(v.ptr(v.rows - 1, v.cols - 1) - v.data) + v.elem_bytes();
}

namespace {

// A view as `count` runs of `length` contiguous elements, run i starting at `first` + i * step
// elements; found for row-contiguous and column-strided views, else count == 0.
struct Runs {
  int64_t count = 0, length = 0, step = 0;
};

Runs runs_of(const MatrixView& v) {
  if (v.col_stride == 1) return {v.rows, v.cols, v.row_stride};
  if (v.row_stride == 1) return {v.cols, v.rows, v.col_stride};
  return {};  // interleaved (gpt-oss gate/up: row_stride 2): read the span
}

}  // namespace

int64_t min_rows_per_chunk(const MatrixView& v) {
  if (v.col_stride == 1 || v.row_stride <= 0 || !v.data) return 1;
  const uint64_t per_row = static_cast<uint64_t>(v.row_stride) * v.elem_bytes();
  return static_cast<int64_t>((kMinGapBytes + per_row - 1) / per_row);
}

MatrixView stage_rows(const MatrixView& v, const SourceReader* reader, ByteBuffer& buf) {
  if (!reader || !v.data || v.rows <= 0 || v.cols <= 0) return v;
  const uint64_t eb = static_cast<uint64_t>(v.elem_bytes());
  const uint64_t span = view_span_bytes(v);
  const Runs runs = runs_of(v);
  const uint64_t run_bytes = static_cast<uint64_t>(runs.length) * eb;
  const uint64_t run_total = run_bytes * static_cast<uint64_t>(runs.count);
  MatrixView staged = v;
  if (runs.count > 1 && (span - run_total) / static_cast<uint64_t>(runs.count - 1) >= kMinGapBytes) {
    buf.resize(run_total);
    for (int64_t i = 0; i < runs.count; ++i)
      reader->read(v.data + i * runs.step * eb, run_bytes, buf.data() + i * run_bytes);
    (v.col_stride == 1 ? staged.row_stride : staged.col_stride) = runs.length;
  } else {
    buf.resize(span);
    reader->read(v.data, span, buf.data());
  }
  staged.data = buf.data();
  return staged;
}

}  // namespace moe
