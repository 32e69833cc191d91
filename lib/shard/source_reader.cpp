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

MatrixView stage_rows(const MatrixView& v, const SourceReader* reader, ByteBuffer& buf) {
  if (!reader || !v.data || v.rows <= 0 || v.cols <= 0) return v;
  const uint64_t eb = static_cast<uint64_t>(v.elem_bytes());
  const uint64_t used = static_cast<uint64_t>(v.cols) * eb;
  const bool sparse_rows = v.col_stride == 1 && v.rows > 1 && used >= kRowReadMinBytes &&
                           2 * v.cols < v.row_stride;
  MatrixView staged = v;
  if (sparse_rows) {
    buf.resize(used * static_cast<uint64_t>(v.rows));
    for (int64_t r = 0; r < v.rows; ++r) reader->read(v.ptr(r, 0), used, buf.data() + r * used);
    staged.row_stride = v.cols;
  } else {
    buf.resize(view_span_bytes(v));
    reader->read(v.data, buf.size(), buf.data());
  }
  staged.data = buf.data();
  return staged;
}

}  // namespace moe
