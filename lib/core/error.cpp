#include "core/error.h"

#include <array>

namespace moe {

namespace {
constexpr std::array<const char*, static_cast<size_t>(ErrorCode::kCount)> kErrorNames = {
    "HeaderTooSmall", "HeaderTooLarge", "InvalidHeaderLength", "InvalidHeader",
    "InvalidHeaderDeserialization", "InvalidOffset", "MisalignedSlice", "TensorInvalidInfo",
    "ValidationOverflow", "MetadataIncompleteBuffer", "UnknownDType", "DuplicateTensor", "Io",
    "InvalidIndex", "InvalidConfig", "UnsupportedFamily", "UnsupportedQuantization",
    "MissingTensor", "ShapeMismatch", "DTypeMismatch", "InvalidArgument", "InvalidPlan",
    "OutputExists", "InvalidShard", "ChecksumMismatch", "Cuda", "Nccl", "Internal"};

std::string compose(ErrorCode code, const std::string& file, const std::string& tensor,
                    const std::string& detail) {
  std::string s;
  if (!file.empty()) s += file + ": ";
  if (!tensor.empty()) s += "tensor '" + tensor + "': ";
  s += detail;
  s += " [";
  s += error_code_name(code);
  s += "]";
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';  // one line, always
  return s;
}
}  // namespace

const char* error_code_name(ErrorCode code) {
  auto i = static_cast<size_t>(code);
  return i < kErrorNames.size() ? kErrorNames[i] : "Unknown";
}

Error::Error(ErrorCode code, std::string file, std::string tensor, std::string detail)
    : std::runtime_error(compose(code, file, tensor, detail)),
      code_(code),
      file_(std::move(file)),
      tensor_(std::move(tensor)),
      detail_(std::move(detail)) {}

void fail(ErrorCode code, std::string file, std::string tensor, std::string detail) {
  throw Error(code, std::move(file), std::move(tensor), std::move(detail));
}

}  // namespace moe
