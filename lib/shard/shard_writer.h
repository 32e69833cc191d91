// The parallel, ordered file writer behind convert: files made of TensorBuilds are cut into
// bounded chunks, filled by worker threads and written with SafetensorsWriter::write_at, while
// one thread hashes the bytes in file order (XXH64, no second pass) and hands finished files
// to a closer thread that commits them. Memory stays bounded by the in-flight byte budget.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/progress.h"
#include "shard/rank_builder.h"

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
  uint64_t chunk_bytes = 8ull << 20;          // target size of one filled buffer
  // Resident bytes of chunks taken but not yet hashed: gather buffers plus the source pages
  // they map until released (one chunk may exceed it).
  uint64_t max_inflight_bytes = 256ull << 20;
  // Source byte ranges a chunk has read: convert drops them from the process's page tables
  // (the page cache keeps them), so resident memory does not grow with the checkpoint.
  std::function<void(const uint8_t*, const uint8_t*)> release_source;
};

// Writes every file; returns them in the given order. Throws the first error (Io on ENOSPC, ...);
// files not committed by then leave no trace (their temporaries are removed).
std::vector<WrittenFile> write_files(const std::vector<OutputFile>& files, const WriteOptions& options,
                                     Progress* progress);

// The bytes a file will hold, for progress totals.
uint64_t planned_bytes(const std::vector<OutputFile>& files);

}  // namespace moe
