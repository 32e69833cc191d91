// The parallel, ordered file writer behind convert: files made of TensorBuilds are cut into
// bounded chunks, read (pread) and filled by worker threads and written with
// SafetensorsWriter::write_at, while one thread at a time hashes the bytes in file order (XXH64,
// no second pass) and hands finished files to a closer thread that commits them. Memory stays
// bounded by the in-flight byte budget.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/progress.h"
#include "shard/rank_builder.h"
#include "shard/source_reader.h"

namespace moe {

struct OutputFile {
  std::string path;  // final path (SafetensorsWriter writes PATH.tmp-* and renames on commit)
  std::map<std::string, std::string> metadata;
  std::vector<TensorBuild> tensors;  // any order; written grouped by alignment (see .cpp)
};

struct WrittenFile {
  std::string path;
  uint64_t bytes = 0;
  uint64_t xxh64 = 0;
};

struct WriteOptions {
  int threads = 1;
  // Target size of one chunk: small enough that its buffer stays in a core's L2 (1 MiB here)
  // from pread through hash and pwrite; 256-512 KiB used the least CPU (docs/perf.md "convert").
  uint64_t chunk_bytes = 256ull << 10;
  // Bytes of buffers held by chunks taken but not yet written (output buffers plus staged
  // source rows); one chunk may exceed it.
  uint64_t max_inflight_bytes = 32ull << 20;
  // fsync each file before its rename, and start its writeback early (sync_file_range) so the
  // fsync finds little left. Off: rename only (convert --no-fsync).
  bool durable = true;
  // Where from-source segments are read: with pread through this reader (convert), or, when
  // null, straight from memory (sources already in memory or mapped).
  const SourceReader* source = nullptr;
  // Asked before each chunk (from worker threads); true stops the write: Error{Io}
  // "interrupted", and, like any failure, no committed file survives the caller's cleanup.
  std::function<bool()> should_stop;
};

// Writes every file; returns them in the given order. Throws the first error (Io on ENOSPC, ...);
// files not committed by then leave no trace (their temporaries are removed).
std::vector<WrittenFile> write_files(const std::vector<OutputFile>& files, const WriteOptions& options,
                                     Progress* progress);

// The bytes a file will hold, for progress totals.
uint64_t planned_bytes(const std::vector<OutputFile>& files);

}  // namespace moe
