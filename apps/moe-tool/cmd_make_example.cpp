// `moe-tool make-example --family F -o DIR`: a small synthetic checkpoint of any family, in the
// exact on-disk layout transformers writes (lib/model/synthetic.h). The README's main job and
// the benchmarks start from it; the size options make multi-GB checkpoints too (streamed).
#include <unistd.h>

#include <filesystem>
#include <string>

#include "command.h"
#include "core/error.h"
#include "core/progress.h"
#include "model/synthetic.h"

namespace {

namespace fs = std::filesystem;

struct Args {
  std::string family, out, dtype = "bf16";
  moe::SyntheticSpec spec;
  bool force = false, json = false, quiet = false;
};

struct DTypeName {
  const char* name;
  moe::DType dtype;
};
constexpr DTypeName kDTypes[] = {{"bf16", moe::DType::BF16}, {"f16", moe::DType::F16},
                                 {"f32", moe::DType::F32}};

std::string family_list() {
  std::string s;
  for (int f = 0; f < static_cast<int>(moe::Family::kCount); ++f)
    s += (s.empty() ? "" : ", ") + std::string(moe::family_name(static_cast<moe::Family>(f)));
  return s;
}

// --force replaces only what looks like a checkpoint we could have written: regular files
// (*.json, *.safetensors, *.md), nothing else, so a mistyped -o cannot wipe a real directory.
bool replaceable(const fs::path& dir) {
  if (!fs::is_directory(dir)) return false;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string ext = e.path().extension().string();
    if (!e.is_regular_file() || (ext != ".json" && ext != ".safetensors" && ext != ".md")) return false;
  }
  return true;
}

uint64_t dir_bytes(const fs::path& dir) {
  uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

}  // namespace

static moe::cli::Registrar reg(5, [](CLI::App& app) {
  auto args = std::make_shared<Args>();
  auto& s = args->spec;
  auto* sub = app.add_subcommand("make-example", "Write a small synthetic checkpoint of a family");
  sub->add_option("--family", args->family, "Family (model_type): " + family_list())->required();
  sub->add_option("-o,--output", args->out, "Output directory")->required();
  sub->add_option("--dtype", args->dtype, "Element type")->check(CLI::IsMember({"bf16", "f16", "f32"}));
  sub->add_option("--layers", s.num_layers, "Decoder layers")->check(CLI::PositiveNumber);
  sub->add_option("--shards", s.num_shards, "Number of safetensors files (> 1 adds the index)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--experts", s.num_experts, "Routed experts")->check(CLI::PositiveNumber);
  sub->add_option("--top-k", s.top_k, "Experts per token")->check(CLI::PositiveNumber);
  sub->add_option("--hidden", s.hidden_size, "Hidden size")->check(CLI::PositiveNumber);
  sub->add_option("--intermediate", s.moe_intermediate_size, "Per-expert intermediate size")
      ->check(CLI::PositiveNumber);
  sub->add_option("--shared", s.shared_intermediate_size,
                  "Total shared-expert width (default: the family's)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--dense-layers", s.first_dense_layers, "Leading dense layers (default: the family's)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--seed", s.seed, "Random seed of the values");
  sub->add_option("--threads", s.threads, "Generation threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--multimodal", s.multimodal, "Llama-4 only: the multimodal wrapper layout");
  sub->add_flag("--force", args->force, "Replace an existing example directory");
  sub->add_flag("--json", args->json, "Print the result as JSON");
  sub->add_flag("--quiet", args->quiet, "No progress line");
  return std::make_pair(sub, std::function<int()>([args] {
    auto family = moe::family_from_name(args->family);
    MOE_CHECK(family.has_value(), InvalidArgument, "", "",
              "unknown family '" + args->family + "' (known: " + family_list() + ")");
    moe::SyntheticSpec spec = args->spec;
    spec.family = *family;
    for (const auto& d : kDTypes)
      if (args->dtype == d.name) spec.dtype = d.dtype;
    spec.quiet = args->quiet || args->json;
    spec = moe::resolve_spec(spec);  // bad combinations fail before anything is written

    const fs::path out(args->out);
    if (fs::exists(out)) {
      MOE_CHECK(args->force, OutputExists, out.string(), "", "already exists (pass --force to replace it)");
      MOE_CHECK(replaceable(out), OutputExists, out.string(), "",
                "is not a checkpoint directory this tool could have written; not replacing it");
    }
    // Write beside the target and rename, so DIR is either the old or the complete new example.
    const fs::path tmp = out.string() + ".tmp-" + std::to_string(::getpid());
    try {
      moe::write_synthetic_checkpoint(tmp.string(), spec);
      if (fs::exists(out)) fs::remove_all(out);
      fs::rename(tmp, out);
    } catch (...) {
      std::error_code ec;
      fs::remove_all(tmp, ec);
      throw;
    }
    const uint64_t bytes = dir_bytes(out);
    if (args->json) {
      moe::cli::print_json({{"path", out.string()}, {"family", moe::family_name(spec.family)},
                            {"dtype", args->dtype}, {"layers", spec.num_layers},
                            {"experts", spec.num_experts}, {"top_k", spec.top_k},
                            {"hidden_size", spec.hidden_size},
                            {"moe_intermediate_size", spec.moe_intermediate_size},
                            {"shared_intermediate_size", spec.shared_intermediate_size},
                            {"files", spec.num_shards}, {"bytes", bytes}, {"seed", spec.seed}});
    } else if (!args->quiet) {
      std::printf("wrote %s: %s, %d layers, %d experts (top-%d), H=%d I=%d, %s, %s\n",
                  out.string().c_str(), moe::family_name(spec.family), spec.num_layers,
                  spec.num_experts, spec.top_k, spec.hidden_size, spec.moe_intermediate_size,
                  args->dtype.c_str(), moe::human_bytes(static_cast<double>(bytes)).c_str());
    }
    return 0;
  }));
});
