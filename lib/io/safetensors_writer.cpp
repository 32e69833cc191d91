#include "io/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"

namespace moe {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // what a reader accepts (formats.md 1.2)
constexpr int kTempAttempts = 16;

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string random_suffix() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  return buf;
}

// Alignment group of a tensor's byte size: 0 for multiples of 8, then 4, 2, odd (see header).
int alignment_group(uint64_t nbytes) {
  if (nbytes % 8 == 0) return 0;
  if (nbytes % 4 == 0) return 1;
  if (nbytes % 2 == 0) return 2;
  return 3;
}

std::string parent_dir(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

SafetensorsWriter::SafetensorsWriter(std::string path, std::map<std::string, std::string> metadata)
    : path_(std::move(path)), metadata_(std::move(metadata)) {
  // O_EXCL with a random name rather than mkstemp: mkstemp creates 0600 files, and shards must be
  // readable like any other output (0666 minus the umask).
  for (int attempt = 0; attempt < kTempAttempts && fd_ < 0; ++attempt) {
    tmp_path_ = path_ + ".tmp-" + random_suffix();
    fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    MOE_CHECK(fd_ >= 0 || errno == EEXIST, Io, path_, "",
              errno_text("cannot create temporary " + tmp_path_));
  }
  MOE_CHECK(fd_ >= 0, Io, path_, "", "cannot find a free temporary name");
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !tmp_path_.empty()) ::unlink(tmp_path_.c_str());
}

void SafetensorsWriter::declare(const std::string& name, DType dtype, const Shape& shape) {
  MOE_CHECK(!begun_, InvalidArgument, path_, name, "declare() after begin_data()");
  MOE_CHECK(name != "__metadata__", InvalidArgument, path_, name, "reserved tensor name");
  MOE_CHECK(index_.count(name) == 0, DuplicateTensor, path_, name, "tensor declared twice");
  const int64_t numel = shape_numel(shape);
  MOE_CHECK(numel >= 0, ValidationOverflow, path_, name,
            "shape " + shape_str(shape) + " has a negative dimension or overflows");
  const auto nbytes = dtype_bytes(dtype, static_cast<uint64_t>(numel));
  MOE_CHECK(nbytes.has_value(), MisalignedSlice, path_, name,
            std::to_string(numel) + " elements of " + dtype_name(dtype) +
                " are not a whole number of bytes");
  index_.emplace(name, decls_.size());
  decls_.push_back({name, dtype, shape, *nbytes, 0});
}

void SafetensorsWriter::begin_data() {
  MOE_CHECK(!begun_, InvalidArgument, path_, "", "begin_data() called twice");
  std::vector<size_t> order(decls_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return alignment_group(decls_[a].nbytes) < alignment_group(decls_[b].nbytes);
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t cursor = 0;
  for (size_t i : order) {
    Decl& d = decls_[i];
    d.begin = cursor;
    MOE_CHECK(!__builtin_add_overflow(cursor, d.nbytes, &cursor), ValidationOverflow, path_,
              d.name, "total data size overflows 64 bits");
    header[d.name] = {{"dtype", dtype_name(d.dtype)},
                      {"shape", d.shape},
                      {"data_offsets", {d.begin, d.begin + d.nbytes}}};
  }
  data_bytes_ = cursor;

  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // names or metadata that are not UTF-8
    fail(ErrorCode::InvalidArgument, path_, "", std::string("cannot encode header: ") + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  MOE_CHECK(text.size() <= kMaxHeaderBytes, HeaderTooLarge, path_, "",
            "header of " + std::to_string(text.size()) + " bytes exceeds what readers accept");
  data_offset_ = 8 + text.size();

  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t(text.size()) >> (8 * i));
  // Reserve the whole file now so a full disk fails here, not hours into a conversion.
  // Filesystems without fallocate (EOPNOTSUPP) simply find out at write time.
  if (data_offset_ + data_bytes_ > 0 &&
      ::fallocate(fd_, 0, 0, static_cast<off_t>(data_offset_ + data_bytes_)) != 0)
    MOE_CHECK(errno != ENOSPC && errno != EFBIG, Io, path_, "",
              errno_text("cannot reserve " + std::to_string(data_offset_ + data_bytes_) +
                         " bytes for " + tmp_path_));
  begun_ = true;
  write_fully(len, 8, 0);
  write_fully(text.data(), text.size(), 8);
}

void SafetensorsWriter::claim_mode(Mode m) {
  MOE_CHECK(begun_, InvalidArgument, path_, "", "data written before begin_data()");
  MOE_CHECK(!committed_, InvalidArgument, path_, "", "data written after commit()");
  int expected = kNone;
  if (!mode_.compare_exchange_strong(expected, m))
    MOE_CHECK(expected == m, InvalidArgument, path_, "", "append() and write_at() mixed");
}

void SafetensorsWriter::write_fully(const void* bytes, uint64_t n, uint64_t file_pos) {
  const auto* p = static_cast<const uint8_t*>(bytes);
  while (n > 0) {
    // Bounded chunks: Linux writes at most ~2 GiB per call anyway.
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, uint64_t(1) << 30));
    ssize_t got = ::pwrite(fd_, p, chunk, static_cast<off_t>(file_pos));
    if (got < 0 && errno == EINTR) continue;
    if (got == 0) errno = ENOSPC;  // no progress and no error: treat as a full device
    MOE_CHECK(got > 0, Io, path_, "",
              errno_text("write of " + std::to_string(chunk) + " bytes at offset " +
                         std::to_string(file_pos) + " of " + tmp_path_ + " failed"));
    p += got;
    n -= static_cast<uint64_t>(got);
    file_pos += static_cast<uint64_t>(got);
  }
}

void SafetensorsWriter::append(const void* bytes, uint64_t n) {
  claim_mode(kAppend);
  const auto* p = static_cast<const uint8_t*>(bytes);
  while (n > 0) {
    while (append_tensor_ < decls_.size() && append_offset_ == decls_[append_tensor_].nbytes) {
      ++append_tensor_;
      append_offset_ = 0;
    }
    MOE_CHECK(append_tensor_ < decls_.size(), InvalidArgument, path_, "",
              "append() of " + std::to_string(n) + " bytes past the last tensor");
    const Decl& d = decls_[append_tensor_];
    const uint64_t chunk = std::min(n, d.nbytes - append_offset_);
    write_fully(p, chunk, data_offset_ + d.begin + append_offset_);
    append_offset_ += chunk;
    written_ += chunk;
    p += chunk;
    n -= chunk;
  }
}

void SafetensorsWriter::write_at(const std::string& name, uint64_t offset, const void* bytes,
                                 uint64_t n) {
  claim_mode(kPositional);
  auto it = index_.find(name);
  MOE_CHECK(it != index_.end(), MissingTensor, path_, name, "write_at() of an undeclared tensor");
  const Decl& d = decls_[it->second];
  MOE_CHECK(offset <= d.nbytes && n <= d.nbytes - offset, InvalidArgument, path_, name,
            "write_at(" + std::to_string(offset) + ", " + std::to_string(n) +
                " bytes) runs past the tensor's " + std::to_string(d.nbytes) + " bytes");
  write_fully(bytes, n, data_offset_ + d.begin + offset);
  written_ += n;
}

uint64_t SafetensorsWriter::file_offset(const std::string& name) const {
  MOE_CHECK(begun_, InvalidArgument, path_, name, "file_offset() before begin_data()");
  auto it = index_.find(name);
  MOE_CHECK(it != index_.end(), MissingTensor, path_, name, "not declared");
  return data_offset_ + decls_[it->second].begin;
}

uint64_t SafetensorsWriter::total_bytes() const {
  MOE_CHECK(begun_, InvalidArgument, path_, "", "total_bytes() before begin_data()");
  return data_offset_ + data_bytes_;
}

void SafetensorsWriter::commit() {
  MOE_CHECK(!committed_, InvalidArgument, path_, "", "commit() called twice");
  if (!begun_) begin_data();
  MOE_CHECK(written_ == data_bytes_, InvalidArgument, path_, "",
            "commit() after " + std::to_string(written_.load()) + " of " +
                std::to_string(data_bytes_) + " data bytes were written");
  MOE_CHECK(!durable_ || ::fsync(fd_) == 0, Io, path_, "",
            errno_text("fsync of " + tmp_path_ + " failed"));
  const int fd = fd_;
  fd_ = -1;
  MOE_CHECK(::close(fd) == 0, Io, path_, "", errno_text("close of " + tmp_path_ + " failed"));
  MOE_CHECK(::rename(tmp_path_.c_str(), path_.c_str()) == 0, Io, path_, "",
            errno_text("cannot rename " + tmp_path_ + " into place"));
  committed_ = true;
  if (!durable_) return;
  // Make the rename itself durable. Best effort: some filesystems refuse fsync on directories,
  // and the file is complete and in place either way.
  int dir = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    (void)::fsync(dir);
    ::close(dir);
  }
}

void write_safetensors(const std::string& path, const std::vector<OwnedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  SafetensorsWriter w(path, metadata);
  for (const auto& t : tensors) {
    w.declare(t.name, t.dtype, t.shape);  // validates the shape and dtype first
    const uint64_t need = *dtype_bytes(t.dtype, static_cast<uint64_t>(shape_numel(t.shape)));
    MOE_CHECK(need == t.bytes.size(), InvalidArgument, path, t.name,
              "holds " + std::to_string(t.bytes.size()) + " bytes but shape " +
                  shape_str(t.shape) + " of " + dtype_name(t.dtype) + " needs " +
                  std::to_string(need));
  }
  w.begin_data();
  for (const auto& t : tensors) w.append(t.bytes.data(), t.bytes.size());
  w.commit();
}

}  // namespace moe
