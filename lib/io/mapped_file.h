// A read-only memory map of a whole file (RAII). Empty files map to a null pointer, size 0.
#pragma once
#include <cstdint>
#include <string>

namespace moe {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws Error{Io} naming the path
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Hint the kernel to read ahead sequentially (madvise); no effect on correctness.
  void advise_sequential() const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace moe
