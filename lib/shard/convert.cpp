#include "shard/convert.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "io/checkpoint.h"
#include "mapping/expert_mapping.h"
#include "model/profile.h"
#include "shard/manifest.h"
#include "shard/rank_builder.h"
#include "shard/shard_check.h"
#include "shard/shard_writer.h"
#include "shard/source_reader.h"
#include "shard/xxhash64.h"

namespace fs = std::filesystem;

namespace moe {

namespace {

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MOE_CHECK(f.good(), Io, path, "", errno_text("cannot open"));
  std::stringstream ss;
  ss << f.rdbuf();
  MOE_CHECK(!f.bad(), Io, path, "", errno_text("cannot read"));
  return ss.str();
}

void fsync_path(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return;  // best effort: some filesystems refuse directory fsync
  (void)::fsync(fd);
  ::close(fd);
}

// A small file written and, when durable, fsynced (manifest.json, config.json).
void write_small_file(const std::string& path, const std::string& bytes, bool durable) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  MOE_CHECK(fd >= 0, Io, path, "", errno_text("cannot create"));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;
      std::string detail = errno_text("write failed");
      ::close(fd);
      fail(ErrorCode::Io, path, "", detail);
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = !durable || ::fsync(fd) == 0;
  std::string detail = synced ? "" : errno_text("fsync failed");
  MOE_CHECK(::close(fd) == 0 && synced, Io, path, "", synced ? errno_text("close failed") : detail);
}

// Removes the temporary output directory unless the conversion completed.
class TempOutput {
 public:
  explicit TempOutput(const std::string& out) {
    std::string tmpl = out + ".tmp-XXXXXX";
    MOE_CHECK(::mkdtemp(tmpl.data()) != nullptr, Io, out, "",
              errno_text("cannot create the temporary output directory " + tmpl));
    path_ = tmpl;
    ::chmod(path_.c_str(), 0755);  // mkdtemp makes it 0700; a shard set is shared like any output
  }
  ~TempOutput() {
    if (path_.empty()) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

std::string strip_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// --force replaces only what convert could have written: a shard set or an empty directory.
void check_output(const std::string& out, bool force) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(out, ec))) return;
  MOE_CHECK(force, OutputExists, out, "", "output exists; pass --force to replace it");
  const bool replaceable = fs::is_directory(out, ec) &&
                           (fs::exists(out + "/" + kManifestName, ec) || fs::is_empty(out, ec));
  MOE_CHECK(replaceable, OutputExists, out, "",
            "output exists and is not a shard set (no manifest.json); refusing to replace it "
            "even with --force");
}

// Moves `tmp` to `out`, replacing an existing shard set at `out` (checked by check_output).
void put_in_place(const std::string& tmp, const std::string& out, bool force, bool durable) {
  std::error_code ec;
  std::string old;
  if (force && fs::exists(fs::symlink_status(out, ec))) {
    check_output(out, true);
    std::string tmpl = out + ".old-XXXXXX";
    MOE_CHECK(::mkdtemp(tmpl.data()) != nullptr, Io, out, "", errno_text("cannot make room"));
    old = tmpl + "/set";
    MOE_CHECK(::rename(out.c_str(), old.c_str()) == 0, Io, out, "",
              errno_text("cannot move the existing output aside"));
    old = tmpl;
  }
  if (::rename(tmp.c_str(), out.c_str()) != 0) {
    const int e = errno;
    if (!old.empty()) (void)::rename((old + "/set").c_str(), out.c_str());  // put it back
    MOE_CHECK(e != EEXIST && e != ENOTEMPTY, OutputExists, out, "",
              "output appeared while converting; pass --force to replace it");
    errno = e;
    fail(ErrorCode::Io, out, "", errno_text("cannot rename " + tmp + " into place"));
  }
  if (durable)
    fsync_path(fs::path(out).parent_path().empty() ? "." : fs::path(out).parent_path().string(),
               O_RDONLY | O_DIRECTORY);
  if (!old.empty()) fs::remove_all(old, ec);
}

uint64_t peak_rss_bytes() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

std::string relative_to(const std::string& path, const std::string& root) {
  std::error_code ec;
  auto rel = fs::relative(path, root, ec);
  return ec || rel.empty() ? fs::path(path).filename().string() : rel.string();
}

}  // namespace

ExpertMapSpec read_expert_map_file(const std::string& path) {
  const std::string text = read_file(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::InvalidArgument, path, "", std::string("expert map is not valid JSON: ") + e.what());
  }
  return parse_expert_map(j, path);
}

nlohmann::json ConvertResult::to_json() const {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& r : manifest.at("ranks"))
    files.push_back({{"file", r.at("file")}, {"bytes", r.at("bytes")}, {"xxh64", r.at("xxh64")}});
  if (manifest.contains("non_moe") && !manifest["non_moe"].is_null())
    files.push_back({{"file", manifest["non_moe"]["file"]},
                     {"bytes", manifest["non_moe"]["bytes"]},
                     {"xxh64", manifest["non_moe"]["xxh64"]}});
  nlohmann::json j = {
      {"output", output},
      {"family", manifest.at("family")},
      {"tp", manifest.at("tp")},
      {"ep", manifest.at("ep")},
      {"world_size", manifest.at("world_size")},
      {"redundant_experts", manifest.at("redundant_experts")},
      {"num_physical_experts", manifest.at("num_physical_experts")},
      {"placement", manifest.at("placement")},
      {"uneven_placement", manifest.at("uneven_placement")},
      {"placement_summary", placement_summary},
      {"experts_per_rank", nlohmann::json::array()},
      {"w13_order", manifest.at("w13_order")},
      {"hidden_size_padded", manifest.at("hidden_size_padded")},
      {"intermediate_per_rank_padded", manifest.at("intermediate_per_rank_padded")},
      {"moe_layers", manifest.at("moe_layers")},
      {"files", files},
      {"bytes_written", bytes_written},
      {"source_bytes", source_bytes},
      {"seconds", seconds},
      {"bytes_per_second", seconds > 0 ? static_cast<double>(bytes_written) / seconds : 0.0},
      {"peak_rss_bytes", peak_rss_bytes},
  };
  for (const auto& r : manifest.at("ranks")) j["experts_per_rank"].push_back(r.at("num_local_experts"));
  if (verified) j["verify"] = {{"ok", verify_problems.empty()}, {"problems", verify_problems}};
  return j;
}

ConvertResult convert_checkpoint(const std::string& ckpt_path, const std::string& out_arg,
                                 const ConvertOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  MOE_CHECK(!out_arg.empty(), InvalidArgument, "", "", "no output directory given (-o)");
  const std::string out = strip_trailing_slashes(out_arg);
  check_output(out, o.force);

  Checkpoint ckpt = Checkpoint::open(ckpt_path);
  const std::string config_path = ckpt.root() + "/config.json";
  MOE_CHECK(ckpt.has_config(), InvalidConfig, config_path, "",
            "no config.json beside the checkpoint; convert needs the model's profile");
  const ModelProfile profile = profile_from_config(ckpt.config(), config_path);
  check_convertible(profile, config_path);
  const Plan plan = plan_placement(profile, o.plan);
  const ExpertMapping mapping(ckpt, profile);

  // Building resolves and checks every source tensor (names, shapes, dtypes) before any byte
  // is written: missing experts and shape mismatches fail here.
  std::vector<std::vector<TensorBuild>> rank_tensors(plan.world_size);
  for (const RankPlan& r : plan.ranks)
    for (int layer : plan.moe_layers)
      for (auto& t : build_rank_layer(mapping, profile, plan, r.rank, layer))
        rank_tensors[r.rank].push_back(std::move(t));
  std::vector<TensorBuild> non_moe;
  if (!o.moe_only) non_moe = build_non_moe(ckpt, profile, mapping);

  TempOutput tmp(out);
  std::vector<OutputFile> files;
  for (const RankPlan& r : plan.ranks)
    files.push_back({tmp.path() + "/" + rank_file_name(r.rank, plan.world_size),
                     rank_metadata(plan, r.rank), std::move(rank_tensors[r.rank])});
  if (!o.moe_only)
    files.push_back({tmp.path() + "/" + kNonMoeName,
                     {{"format", kShardFileFormat}, {"role", "non-moe"}},
                     std::move(non_moe)});

  WriteOptions wo;
  wo.threads = o.threads > 0 ? o.threads : default_threads();
  const SourceReader source(ckpt);
  wo.source = &source;
  wo.should_stop = o.should_stop;
  wo.durable = o.durable;
  std::vector<WrittenFile> written;
  {
    Progress progress("convert", planned_bytes(files), o.quiet);
    written = write_files(files, wo, &progress);
    progress.finish();
  }

  MOE_CHECK(!o.should_stop || !o.should_stop(), Io, out, "",
            "interrupted; the incomplete output is removed");
  ConvertResult result;
  result.output = out;
  nlohmann::json m = manifest_from_plan(plan, profile);
  nlohmann::json source_files = nlohmann::json::array();
  for (const auto& f : ckpt.files()) {
    source_files.push_back({{"name", relative_to(f->path(), ckpt.root())}, {"bytes", f->mapped().size()}});
    result.source_bytes += f->mapped().size();
  }
  const std::string config_bytes = read_file(config_path);
  std::error_code ec;
  fs::path abs = fs::absolute(ckpt_path, ec).lexically_normal();
  m["source"] = {{"path", ec ? ckpt_path : abs.string()},
                 {"files", source_files},
                 {"config_xxh64", xxh64_hex(xxh64(config_bytes.data(), config_bytes.size()))}};
  for (int r = 0; r < plan.world_size; ++r) {
    m["ranks"][r]["bytes"] = written[r].bytes;
    m["ranks"][r]["xxh64"] = xxh64_hex(written[r].xxh64);
    result.bytes_written += written[r].bytes;
  }
  if (!o.moe_only) {
    m["non_moe"] = {{"file", kNonMoeName},
                    {"bytes", written.back().bytes},
                    {"xxh64", xxh64_hex(written.back().xxh64)}};
    result.bytes_written += written.back().bytes;
  } else {
    m["non_moe"] = nullptr;
  }
  write_small_file(tmp.path() + "/config.json", config_bytes, o.durable);
  write_small_file(tmp.path() + "/" + kManifestName, m.dump(2) + "\n", o.durable);
  if (o.durable) fsync_path(tmp.path(), O_RDONLY | O_DIRECTORY);
  put_in_place(tmp.path(), out, o.force, o.durable);
  tmp.release();

  result.manifest = std::move(m);
  result.placement_summary = plan.placement_summary();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Before --verify: it reads through the files' mappings, whose pages then count as resident
  // (reclaimable page cache, but RSS all the same).
  result.peak_rss_bytes = peak_rss_bytes();
  if (o.verify) {
    result.verified = true;
    CheckReport v = validate_shard_set(out);
    CheckReport s = compare_with_source(out, ckpt_path, wo.threads);
    result.verify_problems = v.problems;
    result.verify_problems.insert(result.verify_problems.end(), s.problems.begin(), s.problems.end());
  }
  return result;
}

}  // namespace moe
