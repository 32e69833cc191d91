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
  // Buffer bytes while in flight: the output buffer plus, for a gather, the staged source rows.
  uint64_t cost;
};

uint64_t chunk_cost(const TensorBuild& tb, int64_t r, int64_t e, bool staged_reads) {
  uint64_t cost = static_cast<uint64_t>(e - r) * tb.row_bytes();
  if (!staged_reads || tb.direct_span(r, e)) return std::max<uint64_t>(cost, 1);
  const MatrixView v = tb.source_rows(r, e);
  const uint64_t used = static_cast<uint64_t>(v.cols) * v.elem_bytes() * v.rows;
  return std::max<uint64_t>(cost + std::max(view_span_bytes(v), used), 1);
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

// Workers take chunks in file order (bounded by the in-flight budget) and fill them (pread, or
// gather from staged source rows). Two in-order roles then walk the filled chunks: `hash`
// (XXH64 of each file, header first, no second pass) and `write` (pwrite). Each role is held by
// at most one thread at a time and handed over under mu_, so a filled chunk is never left
// behind; a worker that has filled a chunk tries both. Why this split:
//  - one writer per file, in offset order: ext4 serialises buffered writes to a file on the
//    inode lock, and two threads pwriting into one file spent a quarter of their CPU spinning
//    on it (perf, docs/perf.md "convert");
//  - hashing apart from writing: the write (the kernel's copy into the page cache) is the long
//    pole, and with the hash beside it instead of in front of it the writer runs at cp's pace.
// A chunk's buffer is released when both roles have passed it; a file goes to the closer thread
// (fsync, rename) when both have passed its last chunk.
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
        const int64_t rows_per_chunk = std::max<int64_t>(
            1, static_cast<int64_t>(opt_.chunk_bytes / std::max<uint64_t>(tb.row_bytes(), 1)));
        // Chunks never straddle segments, so most are one contiguous source span (direct).
        const auto& starts = tb.segment_starts();
        for (size_t s = 0; s < starts.size(); ++s) {
          const int64_t end = s + 1 < starts.size() ? starts[s + 1] : tb.num_rows();
          // A column-strided source (stored in x out) is read in runs down its rows: take
          // enough rows per chunk that each run is worth a pread (source_reader.h).
          const Segment& seg = tb.segments()[s];
          const int64_t step = std::max(
              rows_per_chunk, opt_.source && seg.from_source ? min_rows_per_chunk(seg.src) : 1);
          for (int64_t r = starts[s]; r < end; r += step) {
            const int64_t e = std::min(r + step, end);
            chunks_.push_back({f, t, r, e, r * tb.row_bytes(), (e - r) * tb.row_bytes(),
                               chunk_cost(tb, r, e, opt_.source != nullptr)});
          }
        }
      }
      state_[f].end_chunk = chunks_.size();
    }
    ready_.resize(chunks_.size());
    roles_done_.assign(chunks_.size(), 0);
  }

  std::vector<WrittenFile> run() {
    std::thread closer([this] { close_loop(); });
    std::vector<std::thread> pool;
    for (int i = 0; i < std::max(1, opt_.threads); ++i) pool.emplace_back([this] { fill_loop(); });
    try {
      try_roles();  // leading files without data need no worker
    } catch (...) {
      set_error(std::current_exception());
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      done_cv_.wait(lock, [&] { return stop_ || handed_to_closer_ == files_.size(); });
      closing_done_ = true;
    }
    close_cv_.notify_all();
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
  // A filled chunk: its bytes are `buf`, or (no SourceReader) a span of the source memory.
  struct Ready {
    ByteBuffer buf;
    const uint8_t* data = nullptr;
  };
  enum Role { kHash, kWrite, kRoleCount };
  // Where a role is: at chunk `next` of file `file` (files_.size() when done).
  struct Cursor {
    bool held = false;     // a thread is walking it
    bool started = false;  // the current file's start is done (hash: header hashed)
    size_t file = 0, next = 0;
  };

  void set_error(std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = e;
      stop_ = true;
    }
    take_cv_.notify_all();
    close_cv_.notify_all();
    done_cv_.notify_all();
  }

  SafetensorsWriter& open(size_t f) {
    FileState& s = state_[f];
    std::lock_guard<std::mutex> lock(s.open_mu);
    if (s.writer) return *s.writer;
    const OutputFile& file = files_[f];
    auto w = std::make_unique<SafetensorsWriter>(file.path, file.metadata);
    w->set_durable(opt_.durable);
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

  ByteBuffer take_buffer(uint64_t n) {
    std::lock_guard<std::mutex> lock(pool_mu_);
    for (size_t i = 0; i < free_.size(); ++i)
      if (free_[i].capacity() >= n) {
        ByteBuffer b = std::move(free_[i]);
        free_.erase(free_.begin() + static_cast<long>(i));
        b.resize(n);
        return b;
      }
    if (!free_.empty()) free_.pop_back();  // too small: let it go rather than hoard
    return ByteBuffer(n);
  }
  void give_buffer(ByteBuffer b) {
    std::lock_guard<std::mutex> lock(pool_mu_);
    free_.push_back(std::move(b));
  }

  void fill_loop() {
    for (;;) {
      size_t i;
      {
        std::unique_lock<std::mutex> lock(mu_);
        ++take_waiters_;
        take_cv_.wait(lock, [&] {
          return stop_ || next_take_ >= chunks_.size() || inflight_ == 0 ||
                 inflight_ + chunks_[next_take_].cost <= opt_.max_inflight_bytes;
        });
        --take_waiters_;
        if (stop_ || next_take_ >= chunks_.size()) return;
        i = next_take_++;
        inflight_ += chunks_[i].cost;
      }
      try {
        const Chunk& c = chunks_[i];
        const TensorBuild& tb = files_[c.file].tensors[c.tensor];
        MOE_CHECK(!opt_.should_stop || !opt_.should_stop(), Io, files_[c.file].path, "",
                  "interrupted; the incomplete output is removed");
        open(c.file);
        auto ready = std::make_unique<Ready>();
        fill_chunk(c, tb, *ready);
        {
          std::lock_guard<std::mutex> lock(mu_);
          ready_[i] = std::move(ready);
        }
        try_roles();
      } catch (...) {
        set_error(std::current_exception());
        return;
      }
    }
  }

  // One contiguous source span without padding (most chunks) is read straight into the output
  // buffer; anything else (padding, TP column slices, strided or interleaved fused inputs)
  // has its source rows staged first and is gathered from the copy.
  void fill_chunk(const Chunk& c, const TensorBuild& tb, Ready& ready) {
    const uint8_t* direct = tb.direct_span(c.row_begin, c.row_end);
    const MatrixView rows = tb.source_rows(c.row_begin, c.row_end);
    const bool in_memory = !opt_.source || rows.rows == 0;  // no reader, or literal data
    if (direct && in_memory) {  // write from it, no copy
      ready.data = direct;
      return;
    }
    ready.buf = take_buffer(c.bytes);
    ready.data = ready.buf.data();
    if (direct) {
      opt_.source->read(direct, c.bytes, ready.buf.data());
      return;
    }
    if (in_memory) {
      tb.fill(c.row_begin, c.row_end, ready.buf.data());
      return;
    }
    ByteBuffer staging = take_buffer(0);
    const MatrixView staged = stage_rows(rows, opt_.source, staging);
    tb.fill_from(c.row_begin, c.row_end, staged, ready.buf.data());
    give_buffer(std::move(staging));
  }

  // Hash first: it is quick, and leaves the write (the long pole) to whoever is free.
  void try_roles() {
    try_role(kHash);
    try_role(kWrite);
  }

  // Takes `role` if nobody holds it, then walks it as far as the filled chunks go. Exceptions
  // propagate to the caller (who records them); the role is released either way.
  void try_role(Role role) {
    std::unique_lock<std::mutex> lock(mu_);
    Cursor& cur = cursor_[role];
    if (cur.held || stop_) return;
    cur.held = true;
    try {
      walk(role, lock);
    } catch (...) {
      if (!lock.owns_lock()) lock.lock();
      cur.held = false;
      throw;
    }
    cur.held = false;
  }

  void walk(Role role, std::unique_lock<std::mutex>& lock) {
    Cursor& cur = cursor_[role];
    for (;;) {
      if (stop_ || cur.file == files_.size()) return;
      FileState& fs = state_[cur.file];
      if (!cur.started) {  // a new file: open it; the hash starts with the header bytes
        lock.unlock();
        open(cur.file);
        if (role == kHash) {
          hash_ = Xxh64();
          hash_.update(fs.header.data(), fs.header.size());
        } else {
          written_ = synced_ = 0;
        }
        lock.lock();
        cur.started = true;
        cur.next = fs.first_chunk;
      }
      if (cur.next == fs.end_chunk) {  // this role is done with the file
        if (role == kHash) out_[cur.file] = {files_[cur.file].path, fs.writer->total_bytes(), hash_.digest()};
        ++cur.file;
        cur.started = false;
        const size_t both = std::min(cursor_[kHash].file, cursor_[kWrite].file);
        if (handed_to_closer_ < both) {
          for (; handed_to_closer_ < both; ++handed_to_closer_) to_close_.push_back(handed_to_closer_);
          close_cv_.notify_one();
          if (handed_to_closer_ == files_.size()) done_cv_.notify_one();
        }
        continue;
      }
      const size_t i = cur.next;
      const Ready* ready = ready_[i].get();  // stays alive until both roles have passed it
      if (!ready) return;  // release the role under mu_: the filler will take it
      const Chunk& c = chunks_[i];
      lock.unlock();
      if (role == kHash) {
        hash_.update(ready->data, c.bytes);
        if (progress_) progress_->add(c.bytes);
      } else {
        fs.writer->write_at(files_[c.file].tensors[c.tensor].name(), c.offset, ready->data, c.bytes);
        written_ += c.bytes;
        if (opt_.durable && written_ - synced_ >= kWritebackStep) {
          (void)::sync_file_range(fs.fd, static_cast<off64_t>(fs.data_offset + synced_),
                                  static_cast<off64_t>(written_ - synced_), SYNC_FILE_RANGE_WRITE);
          synced_ = written_;
        }
      }
      lock.lock();
      ++cur.next;
      if (++roles_done_[i] == kRoleCount) {  // both passed: free the buffer, admit more chunks
        std::unique_ptr<Ready> done = std::move(ready_[i]);
        inflight_ -= c.cost;
        if (!done->buf.empty()) give_buffer(std::move(done->buf));
        // Waking threads costs a futex call each (a fifth of all CPU when done per chunk).
        if (take_waiters_ > 0) take_cv_.notify_all();
      }
    }
  }

  // fsync + rename in the background so the next file's writing overlaps it.
  void close_loop() {
    for (;;) {
      size_t f;
      {
        std::unique_lock<std::mutex> lock(mu_);
        close_cv_.wait(lock, [&] { return stop_ || closing_done_ || !to_close_.empty(); });
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

  std::mutex mu_;  // guards everything below except what a role's holder alone touches
  std::condition_variable take_cv_;   // workers waiting for the in-flight budget
  std::condition_variable close_cv_;  // the closer waiting for a finished file
  std::condition_variable done_cv_;   // run() waiting for the last file to be handed over
  int take_waiters_ = 0;
  std::vector<std::unique_ptr<Ready>> ready_;
  std::vector<uint8_t> roles_done_;  // per chunk, how many roles have passed it
  size_t next_take_ = 0;
  uint64_t inflight_ = 0;
  Cursor cursor_[kRoleCount];
  size_t handed_to_closer_ = 0;
  std::deque<size_t> to_close_;
  bool stop_ = false, closing_done_ = false;
  std::exception_ptr error_;
  // Only the holder of the hash role touches hash_; only the writer, written_ and synced_.
  Xxh64 hash_;
  uint64_t written_ = 0, synced_ = 0;

  std::mutex pool_mu_;
  std::vector<ByteBuffer> free_;
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
