#include "shard/shard_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "io/safetensors_writer.h"
#include "shard/xxhash64.h"

namespace moe {

namespace {

// SafetensorsWriter lays data out in alignment groups (safetensors_writer.h): sizes that are
// multiples of 8 first, then 4, 2, odd, declaration order kept within a group. Declaring in
// that order makes data order == declaration order, so we know each chunk's place in the file
// before the file exists and can hash in file order. write_files checks the offsets it gets.
int alignment_group(uint64_t nbytes) {
  if (nbytes % 8 == 0) return 0;
  if (nbytes % 4 == 0) return 1;
  if (nbytes % 2 == 0) return 2;
  return 3;
}

std::vector<size_t> data_order(const OutputFile& f) {
  std::vector<size_t> order(f.tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return alignment_group(f.tensors[a].nbytes()) < alignment_group(f.tensors[b].nbytes());
  });
  return order;
}

struct Chunk {
  size_t file, tensor;
  int64_t row_begin, row_end;
  uint64_t offset, bytes;  // within the tensor
  // Resident memory while in flight: the gather buffer (none when written straight from the
  // source) plus the source pages it maps until released (a TP slice of w2 spans whole rows).
  uint64_t cost;
};

uint64_t chunk_cost(const TensorBuild& tb, int64_t r, int64_t e) {
  uint64_t cost = tb.direct_span(r, e) ? 0 : (e - r) * tb.row_bytes();
  tb.for_each_source_range(r, e, [&](const uint8_t* lo, const uint8_t* hi) { cost += hi - lo; });
  return std::max<uint64_t>(cost, 1);
}

// The header bytes SafetensorsWriter wrote (begin_data), read back through our own descriptor.
std::string read_prefix(int fd, uint64_t n, const std::string& name_for_errors) {
  std::string out(n, '\0');
  uint64_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, out.data() + got, n - got, static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    MOE_CHECK(r > 0, Io, name_for_errors, "",
              "cannot read back the header: " + std::string(r < 0 ? std::strerror(errno) : "short file"));
    got += static_cast<uint64_t>(r);
  }
  return out;
}

// Start writeback of finished ranges early, so the fsync in commit() finds little left to do
// and the disk works while we produce the rest (as sequential writers in databases do).
constexpr uint64_t kWritebackStep = 64ull << 20;

// Workers take chunks in file order (bounded by the in-flight budget), fill them (or point at
// the source span), write them with write_at, and then, if the chunk is the next one in file
// order, hash it and every following ready chunk while the bytes are still in their cache.
// Exactly one thread holds the hashing role at a time; the role is handed over under mu_ so a
// ready chunk is never left unhashed. The closer thread commits finished files (fsync).
class Pipeline {
 public:
  Pipeline(const std::vector<OutputFile>& files, const WriteOptions& o, Progress* progress)
      : files_(files), opt_(o), progress_(progress), state_(files.size()), out_(files.size()) {
    for (size_t f = 0; f < files.size(); ++f) {
      state_[f].order = data_order(files[f]);
      state_[f].first_chunk = chunks_.size();
      for (size_t t : state_[f].order) {
        const TensorBuild& tb = files[f].tensors[t];
        if (tb.nbytes() == 0) continue;
        const int64_t step = std::max<int64_t>(
            1, static_cast<int64_t>(opt_.chunk_bytes / std::max<uint64_t>(tb.row_bytes(), 1)));
        // Chunks never straddle segments, so most are one contiguous source span (direct).
        const auto& starts = tb.segment_starts();
        for (size_t s = 0; s < starts.size(); ++s) {
          const int64_t end = s + 1 < starts.size() ? starts[s + 1] : tb.num_rows();
          for (int64_t r = starts[s]; r < end; r += step) {
            const int64_t e = std::min(r + step, end);
            chunks_.push_back({f, t, r, e, r * tb.row_bytes(), (e - r) * tb.row_bytes(),
                               chunk_cost(tb, r, e)});
          }
        }
      }
      state_[f].end_chunk = chunks_.size();
    }
    ready_.resize(chunks_.size());
  }

  std::vector<WrittenFile> run() {
    std::thread closer([this] { close_loop(); });
    std::vector<std::thread> pool;
    for (int i = 0; i < std::max(1, opt_.threads); ++i) pool.emplace_back([this] { fill_loop(); });
    try {
      try_hash();  // leading files without data need no worker
    } catch (...) {
      set_error(std::current_exception());
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || cur_file_ == files_.size(); });
      closing_done_ = true;
    }
    cv_.notify_all();
    for (auto& t : pool) t.join();
    closer.join();
    if (error_) {
      state_.clear();  // writers not committed remove their temporaries
      std::rethrow_exception(error_);
    }
    return out_;
  }

 private:
  struct FileState {
    std::mutex open_mu;
    std::unique_ptr<SafetensorsWriter> writer;
    int fd = -1;  // read-only descriptor of the temporary: header read-back, sync_file_range
    std::vector<size_t> order;
    std::string header;  // the bytes before the data buffer, for the checksum
    uint64_t data_offset = 0;
    size_t first_chunk = 0, end_chunk = 0;
    ~FileState() {
      if (fd >= 0) ::close(fd);
    }
  };
  // A filled chunk: its bytes are either `buf` or a span of the source mapping.
  struct Ready {
    std::vector<uint8_t> buf;
    const uint8_t* data = nullptr;
  };

  void set_error(std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = e;
      stop_ = true;
    }
    cv_.notify_all();
  }

  SafetensorsWriter& open(size_t f) {
    FileState& s = state_[f];
    std::lock_guard<std::mutex> lock(s.open_mu);
    if (s.writer) return *s.writer;
    const OutputFile& file = files_[f];
    auto w = std::make_unique<SafetensorsWriter>(file.path, file.metadata);
    for (size_t t : s.order) w->declare(file.tensors[t].name(), file.tensors[t].dtype(), file.tensors[t].shape());
    w->begin_data();
    uint64_t data_bytes = 0;
    for (size_t t : s.order) data_bytes += file.tensors[t].nbytes();
    const uint64_t data_offset = w->total_bytes() - data_bytes;
    uint64_t cursor = data_offset;
    for (size_t t : s.order) {  // the layout we hash in must be the layout on disk
      MOE_ASSERT(w->file_offset(file.tensors[t].name()) == cursor);
      cursor += file.tensors[t].nbytes();
    }
    s.fd = ::open(w->temp_path().c_str(), O_RDONLY | O_CLOEXEC);
    MOE_CHECK(s.fd >= 0, Io, file.path, "", "cannot reopen " + w->temp_path() + ": " + std::strerror(errno));
    s.header = read_prefix(s.fd, data_offset, file.path);
    s.data_offset = data_offset;
    s.writer = std::move(w);
    return *s.writer;
  }

  std::vector<uint8_t> take_buffer(uint64_t n) {
    std::lock_guard<std::mutex> lock(pool_mu_);
    for (size_t i = 0; i < free_.size(); ++i)
      if (free_[i].capacity() >= n) {
        std::vector<uint8_t> b = std::move(free_[i]);
        free_.erase(free_.begin() + static_cast<long>(i));
        b.resize(n);
        return b;
      }
    if (!free_.empty()) free_.pop_back();  // too small: let it go rather than hoard
    return std::vector<uint8_t>(n);
  }
  void give_buffer(std::vector<uint8_t> b) {
    std::lock_guard<std::mutex> lock(pool_mu_);
    free_.push_back(std::move(b));
  }

  void fill_loop() {
    for (;;) {
      size_t i;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] {
          return stop_ || next_take_ >= chunks_.size() || inflight_ == 0 ||
                 inflight_ + chunks_[next_take_].cost <= opt_.max_inflight_bytes;
        });
        if (stop_ || next_take_ >= chunks_.size()) return;
        i = next_take_++;
        inflight_ += chunks_[i].cost;
      }
      try {
        const Chunk& c = chunks_[i];
        const TensorBuild& tb = files_[c.file].tensors[c.tensor];
        SafetensorsWriter& w = open(c.file);
        auto ready = std::make_unique<Ready>();
        ready->data = tb.direct_span(c.row_begin, c.row_end);
        if (!ready->data) {  // padding, zeros, strided or interleaved sources: gather
          ready->buf = take_buffer(c.bytes);
          tb.fill(c.row_begin, c.row_end, ready->buf.data());
          ready->data = ready->buf.data();
        }
        w.write_at(tb.name(), c.offset, ready->data, c.bytes);
        {
          std::lock_guard<std::mutex> lock(mu_);
          ready_[i] = std::move(ready);
        }
        try_hash();
      } catch (...) {
        set_error(std::current_exception());
        return;
      }
    }
  }

  // Takes the hashing role if nobody holds it and the next chunk is ready, then hashes as far
  // as the ready chunks go. Exceptions propagate to the caller (who records them).
  void try_hash() {
    std::unique_lock<std::mutex> lock(mu_);
    if (hashing_ || stop_) return;
    hashing_ = true;
    for (;;) {
      if (stop_ || cur_file_ == files_.size()) break;
      FileState& fs = state_[cur_file_];
      if (!cur_started_) {  // a new file: its header comes first
        lock.unlock();
        try {
          open(cur_file_);
        } catch (...) {
          lock.lock();
          hashing_ = false;
          throw;
        }
        hash_ = Xxh64();
        hash_.update(fs.header.data(), fs.header.size());
        hashed_ = synced_ = 0;
        lock.lock();
        cur_started_ = true;
        next_hash_ = fs.first_chunk;
      }
      if (next_hash_ == fs.end_chunk) {  // the file is complete: record it, hand it to the closer
        out_[cur_file_] = {files_[cur_file_].path, fs.writer->total_bytes(), hash_.digest()};
        to_close_.push_back(cur_file_);
        ++cur_file_;
        cur_started_ = false;
        cv_.notify_all();
        continue;
      }
      if (!ready_[next_hash_]) break;  // hand the role back under mu_: the filler will see it
      std::unique_ptr<Ready> ready = std::move(ready_[next_hash_]);
      const Chunk& c = chunks_[next_hash_];
      lock.unlock();
      hash_.update(ready->data, c.bytes);
      if (opt_.release_source)
        files_[c.file].tensors[c.tensor].for_each_source_range(c.row_begin, c.row_end, opt_.release_source);
      if (progress_) progress_->add(c.bytes);
      if (!ready->buf.empty()) give_buffer(std::move(ready->buf));
      hashed_ += c.bytes;
      if (hashed_ - synced_ >= kWritebackStep) {
        (void)::sync_file_range(fs.fd, static_cast<off64_t>(fs.data_offset + synced_),
                                static_cast<off64_t>(hashed_ - synced_), SYNC_FILE_RANGE_WRITE);
        synced_ = hashed_;
      }
      lock.lock();
      inflight_ -= c.cost;
      ++next_hash_;
      cv_.notify_all();
    }
    hashing_ = false;
  }

  // fsync + rename in the background so the next file's writing overlaps it.
  void close_loop() {
    for (;;) {
      size_t f;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || closing_done_ || !to_close_.empty(); });
        if (stop_) return;
        if (to_close_.empty()) return;  // closing_done_ and nothing left
        f = to_close_.front();
        to_close_.pop_front();
      }
      try {
        state_[f].writer->commit();
        state_[f].writer.reset();
      } catch (...) {
        set_error(std::current_exception());
        return;
      }
    }
  }

  const std::vector<OutputFile>& files_;
  WriteOptions opt_;
  Progress* progress_;
  std::vector<FileState> state_;
  std::vector<Chunk> chunks_;
  std::vector<WrittenFile> out_;

  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Ready>> ready_;
  size_t next_take_ = 0;
  uint64_t inflight_ = 0;
  std::deque<size_t> to_close_;
  bool stop_ = false, closing_done_ = false;
  std::exception_ptr error_;
  // The hashing cursor; only the holder of the role (hashing_) touches hash_ .. synced_.
  bool hashing_ = false, cur_started_ = false;
  size_t cur_file_ = 0, next_hash_ = 0;
  Xxh64 hash_;
  uint64_t hashed_ = 0, synced_ = 0;

  std::mutex pool_mu_;
  std::vector<std::vector<uint8_t>> free_;
};

}  // namespace

uint64_t planned_bytes(const std::vector<OutputFile>& files) {
  uint64_t n = 0;
  for (const auto& f : files)
    for (const auto& t : f.tensors) n += t.nbytes();
  return n;
}

std::vector<WrittenFile> write_files(const std::vector<OutputFile>& files, const WriteOptions& options,
                                     Progress* progress) {
  Pipeline p(files, options, progress);
  return p.run();
}

}  // namespace moe
