// Writes the seed corpus of fuzz_safetensors_header into DIR/seeds (and creates DIR/corpus for
// what the fuzzer finds): small valid files from our writer and a few hand-made corrupt ones,
// so no binary file is checked in. Usage: fuzz_safetensors_seeds DIR
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io/safetensors_writer.h"

namespace {

std::vector<uint8_t> bytes_of(size_t n, uint8_t start) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(start + 37 * i);
  return b;
}

void write_raw(const std::string& path, const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(uint64_t(header.size()) >> (8 * i));
  out += header;
  out.append(data_bytes, '\x5a');
  std::ofstream(path, std::ios::binary) << out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  namespace fs = std::filesystem;
  const fs::path seeds = fs::path(argv[1]) / "seeds";
  fs::create_directories(seeds);
  fs::create_directories(fs::path(argv[1]) / "corpus");
  using moe::DType;
  moe::write_safetensors((seeds / "dtypes").string(),
                         {{"a", DType::BF16, {2, 3}, bytes_of(12, 1)},
                          {"b", DType::F4, {4}, bytes_of(2, 2)},
                          {"c", DType::F8_E4M3, {3}, bytes_of(3, 3)},
                          {"d", DType::I64, {}, bytes_of(8, 4)},
                          {"e", DType::F32, {0, 5}, {}}},
                         {{"format", "pt"}});
  moe::write_safetensors((seeds / "experts").string(),
                         {{"model.layers.0.mlp.experts.0.gate_proj.weight", DType::F16, {2, 2},
                           bytes_of(8, 5)},
                          {"model.layers.0.mlp.experts.0.down_proj.weight_scale", DType::F32, {1},
                           bytes_of(4, 6)}});
  moe::write_safetensors((seeds / "empty").string(), {});
  const std::string t = R"({"dtype":"U8","shape":[4],"data_offsets":[0,4]})";
  write_raw((seeds / "duplicate").string(), "{\"x\":" + t + ",\"x\":" + t + "}", 4);
  write_raw((seeds / "overlap").string(),
            R"({"x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
            R"("y":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
            4);
  write_raw((seeds / "metadata").string(),
            R"({"__metadata__":{"format":"pt","k":"v"},"s":{"dtype":"F64","shape":[1,1],)"
            R"("data_offsets":[0,8],"extra":[1,{"z":null}]}})",
            8);
  return 0;
}
