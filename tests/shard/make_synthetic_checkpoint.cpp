// A synthetic checkpoint of any size for benchmarks (tests/bench/bench_convert.sh), through
// lib/model/synthetic.h. Usage:
//   make_synthetic_checkpoint OUT FAMILY LAYERS HIDDEN INTER EXPERTS TOPK [DTYPE] [SHARDS]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "model/synthetic.h"

int main(int argc, char** argv) {
  if (argc < 8) {
    std::fprintf(stderr,
                 "usage: %s OUT FAMILY LAYERS HIDDEN INTER EXPERTS TOPK [DTYPE=BF16] [SHARDS=1]\n",
                 argv[0]);
    return 2;
  }
  try {
    moe::SyntheticSpec s;
    auto family = moe::family_from_name(argv[2]);
    MOE_CHECK(family.has_value(), InvalidArgument, "", "", std::string("unknown family ") + argv[2]);
    s.family = *family;
    s.num_layers = std::atoi(argv[3]);
    s.hidden_size = std::atoi(argv[4]);
    s.moe_intermediate_size = std::atoi(argv[5]);
    s.num_experts = std::atoi(argv[6]);
    s.top_k = std::atoi(argv[7]);
    if (argc > 8) {
      auto dt = moe::dtype_from_name(argv[8]);
      MOE_CHECK(dt.has_value(), InvalidArgument, "", "", std::string("unknown dtype ") + argv[8]);
      s.dtype = *dt;
    }
    if (argc > 9) s.num_shards = std::atoi(argv[9]);
    s.first_dense_layers = 0;
    s.vocab_size = 32000;
    moe::write_synthetic_checkpoint(argv[1], s);
  } catch (const moe::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
