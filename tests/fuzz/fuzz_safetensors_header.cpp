// libFuzzer target over parse_safetensors_header: any input must either parse into a header
// that is consistent with the file (every tensor inside the data buffer, sizes that match shape
// and dtype) or throw moe::Error. Anything else (a crash, a sanitizer report, another exception,
// an inconsistent header) is a finding.
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moe::SafetensorsHeader h;
  try {
    h = moe::parse_safetensors_header(data, size, size, "fuzz-input");
  } catch (const moe::Error&) {
    return 0;
  }
  if (h.data_offset < 8 || h.data_offset > size) std::abort();
  for (const moe::TensorEntry& t : h.tensors) {
    if (t.begin > t.end || t.end > size - h.data_offset) std::abort();
    const int64_t numel = moe::shape_numel(t.shape);
    if (numel < 0) std::abort();
    const auto bytes = moe::dtype_bytes(t.dtype, static_cast<uint64_t>(numel));
    if (!bytes || *bytes != t.end - t.begin) std::abort();
  }
  return 0;
}
