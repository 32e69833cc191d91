#include "shard/shard_check.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/parallel.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "mapping/expert_mapping.h"
#include "plan/plan.h"
#include "shard/manifest.h"
#include "shard/rank_builder.h"
#include "shard/shard_set.h"
#include "shard/xxhash64.h"

namespace moe {

namespace {

constexpr size_t kMaxProblems = 100;  // enough to see a pattern, not a flood

nlohmann::json read_manifest(const std::string& dir) {
  const std::string path = dir + "/" + kManifestName;
  std::ifstream f(path, std::ios::binary);
  MOE_CHECK(f.good(), Io, path, "", "cannot open manifest");
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::InvalidShard, path, "", std::string("manifest is not valid JSON: ") + e.what());
  }
}

class Problems {
 public:
  void add(const std::string& s) {
    std::lock_guard<std::mutex> lock(mu_);
    ++count_;
    if (list_.size() < kMaxProblems) list_.push_back(s);
  }
  std::vector<std::string> take() {
    if (count_ > list_.size())
      list_.push_back("... and " + std::to_string(count_ - list_.size()) + " more problems");
    return std::move(list_);
  }

 private:
  std::mutex mu_;
  std::vector<std::string> list_;
  size_t count_ = 0;
};

uint64_t file_size(const std::string& path, bool* exists) {
  struct stat st {};
  *exists = ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
  return *exists ? static_cast<uint64_t>(st.st_size) : 0;
}

// Size and checksum of one listed file. Returns false (with a problem) when the file cannot be
// read for the structural checks (missing, wrong size); a checksum mismatch is reported and the
// structure is still checked.
bool check_file(const std::string& dir, const nlohmann::json& entry, Problems& problems) {
  const std::string name = entry.value("file", "");
  const std::string path = dir + "/" + name;
  bool exists = false;
  const uint64_t size = file_size(path, &exists);
  if (!exists) {
    problems.add(path + ": missing");
    return false;
  }
  const uint64_t want = entry.value("bytes", uint64_t{0});
  if (size != want) {
    problems.add(path + ": " + std::to_string(size) + " bytes, manifest says " + std::to_string(want));
    return false;
  }
  const std::string got = xxh64_hex(xxh64_file(path));
  if (got != entry.value("xxh64", ""))
    problems.add(path + ": xxh64 " + got + " differs from the manifest's " + entry.value("xxh64", ""));
  return true;
}

// A manifest list of ids; anything else (a hand-edited manifest) reads as empty, which the
// comparisons then report.
std::vector<int32_t> int_list(const nlohmann::json& j) {
  std::vector<int32_t> out;
  if (!j.is_array()) return out;
  for (const auto& v : j) {
    if (!v.is_number_integer()) return {};
    out.push_back(v.get<int32_t>());
  }
  return out;
}

std::vector<int32_t> manifest_p2l(const nlohmann::json& m, int layer) {
  const std::string key = std::to_string(layer);
  if (!m.contains("physical_to_logical") || !m["physical_to_logical"].is_object() ||
      !m["physical_to_logical"].contains(key))
    return {};
  return int_list(m["physical_to_logical"][key]);
}

std::vector<int32_t> read_i32(const SafetensorsFile& f, const std::string& name) {
  TensorView v = f.view(name);
  std::vector<int32_t> out(static_cast<size_t>(std::max<int64_t>(v.numel(), 0)));
  if (v.dtype == DType::I32 && !out.empty()) std::memcpy(out.data(), v.data, out.size() * 4);
  return out;
}

// Byte equality of output row `dst` (n elements) with source row r, columns [c0, c0 + n).
bool row_equal(const uint8_t* dst, const MatrixView& src, int64_t r, int64_t c0, int64_t n) {
  const int eb = src.elem_bytes();
  if (src.col_stride == 1) return std::memcmp(dst, src.ptr(r, c0), static_cast<size_t>(n) * eb) == 0;
  for (int64_t c = 0; c < n; ++c)
    if (std::memcmp(dst + c * eb, src.ptr(r, c0 + c), eb) != 0) return false;
  return true;
}

bool all_zero(const uint8_t* p, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i)
    if (p[i]) return false;
  return true;
}

// out: [rows_out, cols_out] elements of `eb` bytes. Its top-left holds src rows
// [r0, r0 + nr) and columns [c0, c0 + nc); everything else must be zero.
bool block_matches(const uint8_t* out, int64_t rows_out, int64_t cols_out, const MatrixView& src,
                   int64_t r0, int64_t nr, int64_t c0, int64_t nc) {
  const int eb = src.elem_bytes();
  const uint64_t row_bytes = static_cast<uint64_t>(cols_out) * eb;
  for (int64_t r = 0; r < rows_out; ++r) {
    const uint8_t* d = out + r * row_bytes;
    if (r < nr) {
      if (!row_equal(d, src, r0 + r, c0, nc)) return false;
      if (!all_zero(d + nc * eb, row_bytes - nc * eb)) return false;
    } else if (!all_zero(d, row_bytes)) {
      return false;
    }
  }
  return true;
}

}  // namespace

nlohmann::json CheckReport::to_json() const {
  return {{"ok", ok()}, {"problems", problems}, {"stats", stats}};
}

nlohmann::json inspect_shard_set(const std::string& dir) {
  const nlohmann::json m = read_manifest(dir);
  const ShardGeometry g = geometry_from_manifest(m, dir + "/" + kManifestName);
  nlohmann::json out = {{"kind", "shard_set"}, {"path", dir}};
  for (const char* k : {"family", "tp", "ep", "world_size", "num_experts", "redundant_experts",
                        "num_physical_experts", "placement", "uneven_placement", "placement_summary",
                        "w13_order", "hidden_size", "hidden_size_padded", "intermediate_size",
                        "intermediate_per_rank", "intermediate_per_rank_padded",
                        "shared_intermediate_size", "shared_per_rank_padded", "moe_layers",
                        "encodings", "source"})
    if (m.contains(k)) out[k] = m[k];
  (void)g;
  nlohmann::json files = nlohmann::json::array();
  auto describe = [&](const nlohmann::json& entry, nlohmann::json extra) {
    const std::string path = dir + "/" + entry.value("file", "");
    extra["file"] = entry.value("file", "");
    extra["bytes"] = entry.value("bytes", uint64_t{0});
    extra["xxh64"] = entry.value("xxh64", "");
    try {
      SafetensorsFile f(path);
      extra["tensors"] = f.header().tensors.size();
    } catch (const Error& e) {
      extra["error"] = e.what();
    }
    files.push_back(extra);
  };
  for (const auto& r : m.at("ranks"))
    describe(r, {{"rank", r.value("rank", -1)},
                 {"tp_rank", r.value("tp_rank", -1)},
                 {"ep_rank", r.value("ep_rank", -1)},
                 {"num_local_experts", r.value("num_local_experts", 0)},
                 {"local_to_physical", r.value("local_to_physical", nlohmann::json::array())}});
  if (m.contains("non_moe") && m["non_moe"].is_object()) describe(m["non_moe"], {{"role", "non-moe"}});
  out["files"] = files;
  return out;
}

CheckReport validate_shard_set(const std::string& dir) {
  const std::string mpath = dir + "/" + kManifestName;
  const nlohmann::json m = read_manifest(dir);
  const ShardGeometry g = geometry_from_manifest(m, mpath);
  const auto ranks = ranks_from_manifest(m, mpath);
  const auto layers = layers_from_manifest(m, mpath);
  const int E = m.value("num_experts", 0);
  MOE_CHECK(E > 0 && E <= g.num_physical_experts, InvalidShard, mpath, "",
            "manifest \"num_experts\" is missing or exceeds num_physical_experts");
  Problems problems;
  CheckReport report;
  int64_t files_ok = 0, tensors_checked = 0;

  // Which EP rank holds each physical expert, per TP rank and layer (from the files).
  std::map<std::pair<int, int>, std::vector<int>> holders;  // (layer, tp_rank) -> count per physical
  std::set<int> unreadable_tp;  // TP ranks with an unreadable file: coverage not judged
  for (const RankInfo& r : ranks) {
    const auto& entry = m["ranks"][r.rank];
    const std::string path = dir + "/" + r.file;
    if (!check_file(dir, entry, problems)) {
      unreadable_tp.insert(r.tp_rank);
      continue;
    }
    ++files_ok;
    try {
      SafetensorsFile f(path);
      const auto want_local = int_list(entry.value("local_to_physical", nlohmann::json()));
      for (int layer : layers) {
        auto name = [&](const char* n) { return shard_tensor_name(layer, n); };
        for (const char* req : {"w13_weight", "w2_weight", "router_weight", "expert_map",
                                "physical_to_logical", "local_to_physical"})
          if (!f.has(name(req))) problems.add(path + ": tensor '" + name(req) + "' missing");
        if (!f.has(name("local_to_physical")) || !f.has(name("physical_to_logical")) ||
            !f.has(name("expert_map")) || !f.has(name("w13_weight")) || !f.has(name("w2_weight")))
          continue;
        const auto local = read_i32(f, name("local_to_physical"));
        const auto p2l = read_i32(f, name("physical_to_logical"));
        const auto emap = read_i32(f, name("expert_map"));
        if (local != want_local)
          problems.add(path + ": layer " + std::to_string(layer) +
                       " local_to_physical differs from the manifest's rank entry");
        if (entry.contains("expert_map") && emap != int_list(entry["expert_map"]))
          problems.add(path + ": layer " + std::to_string(layer) +
                       " expert_map differs from the manifest's rank entry");
        const auto mp2l = manifest_p2l(m, layer);
        if (p2l != mp2l)
          problems.add(path + ": layer " + std::to_string(layer) +
                       " physical_to_logical differs from the manifest");
        if (static_cast<int>(emap.size()) != g.num_physical_experts) {
          problems.add(path + ": '" + name("expert_map") + "' has " + std::to_string(emap.size()) +
                       " entries, expected " + std::to_string(g.num_physical_experts));
          continue;
        }
        auto& h = holders[{layer, r.tp_rank}];
        h.resize(g.num_physical_experts, 0);
        for (size_t i = 0; i < local.size(); ++i) {
          const int32_t p = local[i];
          if (p < 0 || p >= g.num_physical_experts || emap[p] != static_cast<int32_t>(i)) {
            problems.add(path + ": layer " + std::to_string(layer) + " expert_map and local_to_physical disagree at local " + std::to_string(i));
            continue;
          }
          ++h[p];
        }
        int mapped = 0;
        for (int32_t v : emap) mapped += v >= 0;
        if (mapped != static_cast<int>(local.size()))
          problems.add(path + ": layer " + std::to_string(layer) + " expert_map maps " +
                       std::to_string(mapped) + " experts, rank holds " + std::to_string(local.size()));
        const int64_t El = static_cast<int64_t>(local.size());
        const int64_t Ir = g.intermediate_per_rank_padded, Hp = g.hidden_size_padded;
        const std::map<std::string, Shape> shapes = {
            {"w13_weight", {El, 2 * Ir, Hp}}, {"w2_weight", {El, Hp, Ir}},
            {"router_weight", {E, g.hidden_size}}, {"w13_bias", {El, 2 * Ir}},
            {"w2_bias", {El, Hp}}, {"router_bias", {E}}, {"e_score_correction_bias", {E}},
            {"shared_w13_weight", {2 * g.shared_per_rank_padded, Hp}},
            {"shared_w2_weight", {Hp, g.shared_per_rank_padded}},
            {"shared_expert_gate", {1, g.hidden_size}}};
        for (const auto& [short_name, want] : shapes) {
          const bool listed = m.contains("encodings") && m["encodings"].contains(short_name);
          if (!f.has(name(short_name.c_str()))) {
            if (listed) problems.add(path + ": tensor '" + name(short_name.c_str()) + "' missing");
            continue;
          }
          ++tensors_checked;
          const TensorView v = f.view(name(short_name.c_str()));
          if (v.shape != want)
            problems.add(path + ": tensor '" + name(short_name.c_str()) + "' has shape " +
                         shape_str(v.shape) + ", the manifest implies " + shape_str(want));
        }
        if (f.view(name("w13_weight")).dtype != f.view(name("w2_weight")).dtype)
          problems.add(path + ": layer " + std::to_string(layer) + " w13 and w2 dtypes differ");
      }
    } catch (const Error& e) {
      problems.add(e.what());
      unreadable_tp.insert(r.tp_rank);
    }
  }
  if (m.contains("non_moe") && m["non_moe"].is_object() && check_file(dir, m["non_moe"], problems))
    ++files_ok;

  // Coverage: each physical expert on exactly one EP rank per TP rank; each logical somewhere.
  for (int layer : layers) {
    const auto mp2l = manifest_p2l(m, layer);
    if (static_cast<int>(mp2l.size()) != g.num_physical_experts) {
      problems.add(mpath + ": physical_to_logical of layer " + std::to_string(layer) +
                   " does not list num_physical_experts entries");
      continue;
    }
    for (int t = 0; t < g.tp; ++t) {
      auto it = holders.find({layer, t});
      if (it == holders.end() || unreadable_tp.count(t)) continue;  // already reported
      std::set<int32_t> logical;
      for (int p = 0; p < g.num_physical_experts; ++p) {
        if (it->second[p] != 1)
          problems.add("layer " + std::to_string(layer) + " tp_rank " + std::to_string(t) +
                       ": physical expert " + std::to_string(p) + " is on " +
                       std::to_string(it->second[p]) + " EP ranks, expected exactly 1");
        else
          logical.insert(mp2l[p]);
      }
      for (int l = 0; l < E; ++l)
        if (!logical.count(l))
          problems.add("layer " + std::to_string(layer) + " tp_rank " + std::to_string(t) +
                       ": logical expert " + std::to_string(l) + " is on no rank");
    }
  }
  report.problems = problems.take();
  report.stats = {{"files_checked", files_ok}, {"tensor_shapes_checked", tensors_checked},
                  {"layers", layers.size()}, {"ranks", ranks.size()}};
  return report;
}

CheckReport compare_with_source(const std::string& dir, const std::string& ckpt_arg, int threads) {
  const ShardSet set = ShardSet::open(dir, false);
  const std::string ckpt_path = ckpt_arg.empty() ? set.source_path() : ckpt_arg;
  Checkpoint ckpt = Checkpoint::open(ckpt_path);
  const ModelProfile& profile = set.profile();
  const ExpertMapping mapping(ckpt, profile);
  const ShardGeometry& g = set.geometry();
  const int64_t H = g.hidden_size, Hp = g.hidden_size_padded, Ir = g.intermediate_per_rank_padded,
                Iu = g.intermediate_per_rank, I = profile.moe_intermediate_size;
  Problems problems;
  std::atomic<int64_t> experts_checked{0};
  const auto& layers = profile.moe_layers;
  const int64_t jobs = static_cast<int64_t>(set.ranks().size() * layers.size());

  parallel_for(jobs, std::max(1, threads), [&](int64_t job) {
    const RankInfo& rank = set.ranks()[job / layers.size()];
    const int layer = layers[job % layers.size()];
    const std::string where = rank.file + " layer " + std::to_string(layer);
    try {
      const RankLayer& rl = set.layer(rank.rank, layer);
      // This rank's slice of the intermediate dim, recomputed from the manifest's sizes.
      const int64_t begin = std::min<int64_t>(rank.tp_rank * Iu, I);
      const int64_t count = std::min<int64_t>(Iu, I - begin);
      const int eb = dtype_bits(rl.w13.dtype) / 8;
      for (size_t j = 0; j < rl.local_to_physical.size(); ++j) {
        const int p = rl.local_to_physical[j];
        const int e = rl.physical_to_logical.at(p);
        const MatrixView gate = mapping.expert_weight(layer, e, Proj::Gate);
        const MatrixView up = mapping.expert_weight(layer, e, Proj::Up);
        const MatrixView down = mapping.expert_weight(layer, e, Proj::Down);
        const uint8_t* w13 = rl.w13.data + j * 2 * Ir * Hp * eb;
        const MatrixView& first = g.w13_up_first ? up : gate;
        const MatrixView& second = g.w13_up_first ? gate : up;
        const std::string id = where + " local expert " + std::to_string(j) + " (physical " +
                               std::to_string(p) + ", logical " + std::to_string(e) + ")";
        if (gate.dtype != rl.w13.dtype || down.dtype != rl.w2.dtype) {
          problems.add(id + ": dtype differs from the source");
          continue;
        }
        if (!block_matches(w13, Ir, Hp, first, begin, count, 0, H) ||
            !block_matches(w13 + Ir * Hp * eb, Ir, Hp, second, begin, count, 0, H))
          problems.add(id + ": w13 differs from the source (or pads are not zero)");
        if (!block_matches(rl.w2.data + j * Hp * Ir * eb, Hp, Ir, down, 0, H, begin, count))
          problems.add(id + ": w2 differs from the source (or pads are not zero)");
        if (rl.w13_bias.data) {
          const int bb = dtype_bits(rl.w13_bias.dtype) / 8;
          auto gb = mapping.expert_bias(layer, e, Proj::Gate), ub = mapping.expert_bias(layer, e, Proj::Up),
               db = mapping.expert_bias(layer, e, Proj::Down);
          const uint8_t* b13 = rl.w13_bias.data + j * 2 * Ir * bb;
          const MatrixView& bf = g.w13_up_first ? *ub : *gb;
          const MatrixView& bs = g.w13_up_first ? *gb : *ub;
          if (!block_matches(b13, 1, Ir, bf, 0, 1, begin, count) ||
              !block_matches(b13 + Ir * bb, 1, Ir, bs, 0, 1, begin, count))
            problems.add(id + ": w13_bias differs from the source");
          const uint8_t* b2 = rl.w2_bias.data + j * Hp * bb;
          if (!block_matches(b2, 1, Hp, *db, 0, rank.tp_rank == 0 ? 1 : 0, 0, H))
            problems.add(id + ": w2_bias differs (source on tp_rank 0, zeros elsewhere)");
        }
        ++experts_checked;
      }
      const MatrixView router = mapping.router_weight(layer);
      if (!block_matches(rl.router_weight.data, profile.num_experts, H, router, 0,
                         profile.num_experts, 0, H))
        problems.add(where + ": router_weight differs from the source");
      if (rl.router_bias.data) {
        auto b = mapping.router_bias(layer);
        if (!block_matches(rl.router_bias.data, 1, profile.num_experts, *b, 0, 1, 0, profile.num_experts))
          problems.add(where + ": router_bias differs from the source");
      }
      if (rl.correction_bias.data) {
        auto b = mapping.correction_bias(layer);
        if (!block_matches(rl.correction_bias.data, 1, profile.num_experts, *b, 0, 1, 0, profile.num_experts))
          problems.add(where + ": e_score_correction_bias differs from the source");
      }
      if (rl.shared_w13.data) {
        const int64_t Isu = g.shared_per_rank, Isr = g.shared_per_rank_padded,
                      Is = profile.shared_intermediate_size;
        const int64_t sb = std::min<int64_t>(rank.tp_rank * Isu, Is), sc = std::min<int64_t>(Isu, Is - sb);
        auto sg = mapping.shared_weight(layer, Proj::Gate), su = mapping.shared_weight(layer, Proj::Up),
             sd = mapping.shared_weight(layer, Proj::Down);
        const int seb = dtype_bits(rl.shared_w13.dtype) / 8;
        const MatrixView& f = g.w13_up_first ? *su : *sg;
        const MatrixView& s = g.w13_up_first ? *sg : *su;
        if (!block_matches(rl.shared_w13.data, Isr, Hp, f, sb, sc, 0, H) ||
            !block_matches(rl.shared_w13.data + Isr * Hp * seb, Isr, Hp, s, sb, sc, 0, H) ||
            !block_matches(rl.shared_w2.data, Hp, Isr, *sd, 0, H, sb, sc))
          problems.add(where + ": shared expert differs from the source");
      }
      if (rl.shared_expert_gate.data) {
        auto sg = mapping.shared_expert_gate(layer);
        if (!block_matches(rl.shared_expert_gate.data, 1, H, *sg, 0, 1, 0, H))
          problems.add(where + ": shared_expert_gate differs from the source");
      }
    } catch (const Error& e) {
      problems.add(where + ": " + e.what());
    }
  });
  CheckReport report;
  report.problems = problems.take();
  report.stats = {{"experts_compared", experts_checked.load()}, {"source", ckpt_path}};
  return report;
}

}  // namespace moe
