// One error type for the whole library: a code per rule, the file, the tensor and the detail.
// The CLI catches moe::Error once, prints what() on one line and maps it to an exit code.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace moe {

enum class ErrorCode {
  // safetensors rejection rules, formats.md section 1.2, one per rule (names follow tensor.rs).
  HeaderTooSmall,
  HeaderTooLarge,
  InvalidHeaderLength,
  InvalidHeader,                 // not UTF-8 / not a JSON object
  InvalidHeaderDeserialization,  // JSON valid, but not the safetensors schema
  InvalidOffset,
  MisalignedSlice,
  TensorInvalidInfo,
  ValidationOverflow,
  MetadataIncompleteBuffer,
  UnknownDType,
  DuplicateTensor,
  // checkpoints and models
  Io,
  InvalidIndex,        // model.safetensors.index.json
  InvalidConfig,       // config.json
  UnsupportedFamily,
  UnsupportedQuantization,
  MissingTensor,
  ShapeMismatch,
  DTypeMismatch,
  // plans, shards, runs
  InvalidArgument,
  InvalidPlan,
  OutputExists,
  InvalidShard,
  ChecksumMismatch,
  Cuda,
  Nccl,
  Internal,
  kCount
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, std::string file, std::string tensor, std::string detail);
  ErrorCode code() const { return code_; }
  const std::string& file() const { return file_; }
  const std::string& tensor() const { return tensor_; }
  const std::string& detail() const { return detail_; }

 private:
  ErrorCode code_;
  std::string file_, tensor_, detail_;
};

[[noreturn]] void fail(ErrorCode code, std::string file, std::string tensor, std::string detail);

}  // namespace moe

// Bad input: throws moe::Error. `file` and `tensor` may be empty strings.
#define MOE_CHECK(cond, code, file, tensor, detail)                     \
  do {                                                                  \
    if (!(cond)) ::moe::fail(::moe::ErrorCode::code, file, tensor, detail); \
  } while (0)

// Our own bug: abort with file:line. Never for input validation.
#define MOE_ASSERT(cond)                                                               \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "moe-tool internal error: %s at %s:%d\n", #cond, __FILE__, \
                   __LINE__);                                                          \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)
