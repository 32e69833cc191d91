// Several GPUs through NCCL (lib/runtime/multi_gpu.h, nccl_*): the rank -> GPU assignment and the
// world plan (pure), the launcher variables, the TCP unique-id bootstrap over localhost (threads
// as processes), and, on a GPU, world size 1 through NCCL against the single-GPU backend, the
// reference, the watchdog and the bench. Without a GPU the first [gpu] case checks the backend's
// error and exits 77; CTest also runs the CPU cases alone (test_multi_gpu_cpu: "~[gpu]").
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "model/synthetic.h"
#include "reference/run_report.h"
#include "runtime/backend.h"
#include "runtime/device_info.h"
#include "runtime/multi_gpu.h"
#include "runtime/nccl_bench.h"
#include "runtime/nccl_bootstrap.h"
#include "shard/convert.h"
#include "support/temp_dir.h"

#ifdef MOE_HAVE_NCCL
#include "runtime/nccl_comm.h"
#endif

using namespace moe;
using namespace moe::test;
using Clock = std::chrono::steady_clock;

namespace {

// Runs fn, which must throw moe::Error with `code` and a message containing `part`.
template <typename Fn>
void require_error(Fn&& fn, ErrorCode code, const std::string& part) {
  try {
    fn();
    FAIL("no error; expected " << error_code_name(code) << " with '" << part << "'");
  } catch (const Error& e) {
    INFO(e.what());
    CHECK(e.code() == code);
    CHECK(std::string(e.what()).find(part) != std::string::npos);
  }
}

EnvLookup table_env(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A port nothing listens on right now (bound, read, released).
int free_port() {
  BootstrapServer probe(0);
  return probe.port();
}

// serve() on this thread; a throw is returned as text so that the peer threads still get joined.
std::string serve_noexcept(BootstrapServer& server, const std::vector<uint8_t>& id, int world) {
  try {
    server.serve(id, world, 20);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

struct ToolResult {
  int rc = -1;
  std::string out, err;
};

// The built moe-tool (MOE_TOOL, set by moe_add_test) with `args`, without launcher variables
// that the environment CTest runs in might hold.
ToolResult run_tool(const std::string& args, const TempDir& dir) {
  const char* tool = std::getenv("MOE_TOOL");
  REQUIRE(tool != nullptr);
  REQUIRE(access(tool, X_OK) == 0);
  const std::string err_path = dir / "stderr.txt";
  const std::string cmd =
      "env -u RANK -u WORLD_SIZE -u OMPI_COMM_WORLD_RANK -u PMI_RANK "
      "-u SLURM_PROCID " +
      std::string(tool) + " " + args + " 2>" + err_path;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  ToolResult r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = read_text(err_path);
  return r;
}

std::vector<uint8_t> random_payload(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> p(128);
  for (auto& b : p) b = uint8_t(rng());
  return p;
}

}  // namespace

// ---- the assignment and the world plan (pure) --------------------------------------------------

TEST_CASE("assign_ranks puts rank r on member r mod N, every rank once", "[multi_gpu]") {
  CHECK(assign_ranks(4, 2) == std::vector<std::vector<int>>{{0, 2}, {1, 3}});
  CHECK(assign_ranks(5, 2) == std::vector<std::vector<int>>{{0, 2, 4}, {1, 3}});
  CHECK(assign_ranks(3, 3) == std::vector<std::vector<int>>{{0}, {1}, {2}});
  CHECK(assign_ranks(7, 1) == std::vector<std::vector<int>>{{0, 1, 2, 3, 4, 5, 6}});
  for (int ranks = 1; ranks <= 19; ++ranks)
    for (int world = 1; world <= ranks; ++world) {
      INFO(ranks << " ranks, world " << world);
      const auto a = assign_ranks(ranks, world);
      REQUIRE(int(a.size()) == world);
      std::vector<int> seen(size_t(ranks), 0);
      size_t smallest = a[0].size(), largest = a[0].size();
      for (int m = 0; m < world; ++m) {
        REQUIRE(!a[size_t(m)].empty());
        smallest = std::min(smallest, a[size_t(m)].size());
        largest = std::max(largest, a[size_t(m)].size());
        for (size_t i = 0; i < a[size_t(m)].size(); ++i) {
          const int r = a[size_t(m)][i];
          CHECK(r % world == m);
          if (i > 0) CHECK(r > a[size_t(m)][i - 1]);
          ++seen[size_t(r)];
        }
      }
      CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
      CHECK(largest - smallest <= 1);
    }
}

TEST_CASE("assign_ranks refuses a world that does not fit", "[multi_gpu]") {
  require_error([] { assign_ranks(2, 3); }, ErrorCode::InvalidArgument, "use at most 2 GPUs");
  require_error([] { assign_ranks(4, 0); }, ErrorCode::InvalidArgument, "world of 0");
  require_error([] { assign_ranks(0, 1); }, ErrorCode::InvalidArgument, "no ranks");
}

TEST_CASE("plan_world: GPUs in one process", "[multi_gpu]") {
  MultiGpuOptions o;
  o.gpus = 2;
  WorldPlan p = plan_world(4, 8, o);
  CHECK(p.world_size == 2);
  CHECK(!p.launcher);
  CHECK(p.devices == std::vector<int>{0, 1});
  CHECK(p.ranks_of_member == std::vector<std::vector<int>>{{0, 2}, {1, 3}});
  CHECK(world_summary(p) ==
        "world of 2 (thread per GPU): GPU 0 runs ranks 0, 2; GPU 1 runs ranks 1, 3");
  CHECK(world_json(p)["members"][1]["ranks"] == nlohmann::json::array({1, 3}));

  o.gpus = 0;  // all: at most one GPU per rank
  CHECK(plan_world(3, 8, o).world_size == 3);
  CHECK(plan_world(16, 8, o).world_size == 8);
  CHECK(plan_world(16, 8, o).ranks_of_member[7] == std::vector<int>{7, 15});

  o.devices = {3, 1};
  p = plan_world(3, 4, o);
  CHECK(p.devices == std::vector<int>{3, 1});
  CHECK(p.ranks_of_member == std::vector<std::vector<int>>{{0, 2}, {1}});
  CHECK(world_summary(p) ==
        "world of 2 (thread per GPU): GPU 3 runs ranks 0, 2; GPU 1 runs rank 1");
}

TEST_CASE("plan_world refuses worlds that do not fit, naming why", "[multi_gpu]") {
  MultiGpuOptions o;
  o.gpus = 3;
  require_error([&] { plan_world(4, 2, o); }, ErrorCode::InvalidArgument, "2 visible CUDA devices");
  require_error([&] { plan_world(2, 4, o); }, ErrorCode::InvalidArgument, "shard set of 2 ranks");
  require_error([&] { plan_world(2, 0, o); }, ErrorCode::InvalidArgument, "no visible CUDA device");
  o.devices = {0, 4};
  require_error([&] { plan_world(2, 4, o); }, ErrorCode::InvalidArgument, "CUDA device 4");
  MultiGpuOptions l;
  l.launcher = LauncherEnv{"torchrun", 2, 4, 2, "10.0.0.1", 29500};
  require_error([&] { plan_world(8, 2, l); }, ErrorCode::InvalidArgument,
                "local rank 2 (torchrun) but this process sees 2 visible CUDA devices");
  l.launcher = LauncherEnv{"torchrun", 1, 4, 1, "10.0.0.1", 29500};
  require_error([&] { plan_world(3, 2, l); }, ErrorCode::InvalidArgument, "shard set of 3 ranks");
}

TEST_CASE("plan_world: one process per GPU from the launcher", "[multi_gpu]") {
  MultiGpuOptions o;
  o.launcher = LauncherEnv{"torchrun", 3, 4, 1, "node0", 29500};
  const WorldPlan p = plan_world(8, 2, o);
  CHECK(p.world_size == 4);
  CHECK(p.process_rank == 3);
  CHECK(p.devices == std::vector<int>{1});
  CHECK(p.ranks_of_member[3] == std::vector<int>{3, 7});
  const nlohmann::json j = world_json(p);
  CHECK(j["mode"] == "process per GPU");
  CHECK(j["members"][3]["device"] == 1);
  CHECK(!j["members"][0].contains("device"));  // another process's GPU is not known here
  CHECK(world_summary(p).find("process 0 runs ranks 0, 4; ") != std::string::npos);
  CHECK(world_summary(p).find("GPU 1 runs ranks 3, 7") != std::string::npos);

  // One GPU visible per process (the launcher bound it): that one, whatever the local rank.
  o.launcher = LauncherEnv{"Slurm", 5, 8, 3, "node0", 29500};
  CHECK(plan_world(8, 1, o).devices == std::vector<int>{0});
}

// ---- launcher variables and --gpus --------------------------------------------------------------

TEST_CASE("read_launcher_env reads torchrun, Open MPI and Slurm variables", "[multi_gpu]") {
  CHECK(!read_launcher_env(table_env({{"MASTER_ADDR", "h"}})).has_value());

  auto env = read_launcher_env(table_env({{"RANK", "5"},
                                          {"WORLD_SIZE", "8"},
                                          {"LOCAL_RANK", "1"},
                                          {"MASTER_ADDR", "node-a"},
                                          {"MASTER_PORT", "29500"}}));
  REQUIRE(env.has_value());
  CHECK(env->launcher == "torchrun");
  CHECK(env->rank == 5);
  CHECK(env->world_size == 8);
  CHECK(env->local_rank == 1);
  CHECK(env->master_addr == "node-a");
  CHECK(env->port == 29500);

  env = read_launcher_env(table_env({{"OMPI_COMM_WORLD_RANK", "2"},
                                     {"OMPI_COMM_WORLD_SIZE", "3"},
                                     {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                                     {"MASTER_ADDR", "x"},
                                     {"MASTER_PORT", "1234"},
                                     {"MOE_NCCL_BOOTSTRAP_PORT", "4321"}}));
  REQUIRE(env.has_value());
  CHECK(env->launcher == "Open MPI");
  CHECK(env->rank == 2);
  CHECK(env->port == 4321);  // the override wins

  env = read_launcher_env(table_env({{"SLURM_PROCID", "0"},
                                     {"SLURM_NTASKS", "2"},
                                     {"SLURM_LOCALID", "0"},
                                     {"MASTER_ADDR", "x"},
                                     {"MASTER_PORT", "1"}}));
  REQUIRE(env.has_value());
  CHECK(env->launcher == "Slurm");
  CHECK(env->world_size == 2);
}

TEST_CASE("read_launcher_env names the variable that is missing or wrong", "[multi_gpu]") {
  const std::map<std::string, std::string> good = {{"RANK", "1"},
                                                   {"WORLD_SIZE", "2"},
                                                   {"LOCAL_RANK", "1"},
                                                   {"MASTER_ADDR", "h"},
                                                   {"MASTER_PORT", "29500"}};
  auto without = [&](const std::string& k) {
    auto v = good;
    v.erase(k);
    return table_env(v);
  };
  auto with = [&](const std::string& k, const std::string& val) {
    auto v = good;
    v[k] = val;
    return table_env(v);
  };
  require_error([&] { read_launcher_env(without("LOCAL_RANK")); }, ErrorCode::InvalidArgument,
                "LOCAL_RANK is not set");
  require_error([&] { read_launcher_env(without("MASTER_ADDR")); }, ErrorCode::InvalidArgument,
                "MASTER_ADDR is not set");
  require_error([&] { read_launcher_env(without("MASTER_PORT")); }, ErrorCode::InvalidArgument,
                "MASTER_PORT is not set");
  require_error([&] { read_launcher_env(with("RANK", "2")); }, ErrorCode::InvalidArgument,
                "RANK='2'");
  require_error([&] { read_launcher_env(with("RANK", "1x")); }, ErrorCode::InvalidArgument,
                "RANK='1x'");
  require_error([&] { read_launcher_env(with("MASTER_PORT", "70000")); },
                ErrorCode::InvalidArgument, "MASTER_PORT='70000'");
  require_error([&] { read_launcher_env(with("WORLD_SIZE", "0")); }, ErrorCode::InvalidArgument,
                "WORLD_SIZE='0'");
}

TEST_CASE("parse_gpus_option: N, all, env", "[multi_gpu]") {
  const EnvLookup none = table_env({});
  CHECK(parse_gpus_option("4", none).gpus == 4);
  CHECK(!parse_gpus_option("4", none).launcher);
  CHECK(parse_gpus_option("all", none).gpus == 0);
  require_error([&] { parse_gpus_option("0", none); }, ErrorCode::InvalidArgument, "--gpus '0'");
  require_error([&] { parse_gpus_option("two", none); }, ErrorCode::InvalidArgument,
                "--gpus 'two'");
  require_error([&] { parse_gpus_option("env", none); }, ErrorCode::InvalidArgument,
                "no launcher variables");
  const MultiGpuOptions o = parse_gpus_option("env", table_env({{"RANK", "0"},
                                                                {"WORLD_SIZE", "2"},
                                                                {"LOCAL_RANK", "0"},
                                                                {"MASTER_ADDR", "127.0.0.1"},
                                                                {"MASTER_PORT", "29500"}}));
  REQUIRE(o.launcher.has_value());
  CHECK(o.launcher->world_size == 2);
}

TEST_CASE("run and bench --gpus refuse bad values with exit 2 and one line", "[multi_gpu][cli]") {
  TempDir tmp;
  const std::string ckpt = tmp / "ckpt";
  SyntheticSpec spec;
  spec.family = Family::Mixtral;
  spec.num_layers = 1;
  spec.hidden_size = 16;
  spec.moe_intermediate_size = 8;
  spec.num_experts = 4;
  spec.vocab_size = 8;
  spec.threads = 1;
  write_synthetic_checkpoint(ckpt, spec);
  struct Case {
    std::string args, part;
  };
  const Case cases[] = {
      {"run " + ckpt + " --gpus two", "--gpus 'two'"},
      {"run " + ckpt + " --gpus 0", "--gpus '0'"},
      {"run " + ckpt + " --gpus 1 --device cpu", "drop --device cpu"},
      {"run " + ckpt + " --gpus env", "no launcher variables"},
      {"bench --shape mixtral --gpus nope", "--gpus 'nope'"},
      {"bench --shape mixtral --gpus 2 --settle 1", "not with --gpus"},
  };
  for (const Case& c : cases) {
    INFO(c.args);
    const ToolResult t = run_tool(c.args, tmp);
    INFO(t.err);
    CHECK(t.rc == 2);
    CHECK(t.err.find(c.part) != std::string::npos);
    CHECK(std::count(t.err.begin(), t.err.end(), '\n') == 1);
  }
}

// ---- the unique-id bootstrap over localhost (threads stand in for processes) --------------------

TEST_CASE("bootstrap hands process 0's id to every other process", "[multi_gpu][bootstrap]") {
  const std::vector<uint8_t> id = random_payload(91);
  for (int world : {1, 2, 5}) {
    INFO("world " << world);
    BootstrapServer server(0);
    const int port = server.port();
    REQUIRE(port > 0);
    std::vector<std::vector<uint8_t>> got(static_cast<size_t>(world));
    std::vector<std::string> errors(static_cast<size_t>(world));
    std::vector<std::thread> peers;
    for (int r = 1; r < world; ++r)
      peers.emplace_back([&, r] {
        try {
          got[size_t(r)] = bootstrap_receive("127.0.0.1", port, r, world, 20);
        } catch (const std::exception& e) {
          errors[size_t(r)] = e.what();
        }
      });
    const std::string served = serve_noexcept(server, id, world);
    for (auto& t : peers) t.join();
    CHECK(served.empty());
    for (int r = 1; r < world; ++r) {
      CHECK(errors[size_t(r)].empty());
      CHECK(got[size_t(r)] == id);
    }
  }
}

TEST_CASE("bootstrap peers that start before process 0 keep trying", "[multi_gpu][bootstrap]") {
  const std::vector<uint8_t> id = random_payload(17);
  const int port = free_port();
  std::vector<uint8_t> got;
  std::string error;
  std::thread peer([&] {
    try {
      got = bootstrap_receive("localhost", port, 1, 2, 20);
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  BootstrapServer server(port);
  const std::string served = serve_noexcept(server, id, 2);
  peer.join();
  CHECK(served.empty());
  CHECK(error.empty());
  CHECK(got == id);
}

TEST_CASE("bootstrap times out naming the processes that never came", "[multi_gpu][bootstrap]") {
  const std::vector<uint8_t> id = random_payload(5);
  BootstrapServer server(0);
  const int port = server.port();
  std::vector<uint8_t> got;
  std::thread peer([&] {
    try {
      got = bootstrap_receive("127.0.0.1", port, 2, 4, 20);
    } catch (const Error&) {
    }
  });
  const auto t0 = Clock::now();
  require_error([&] { server.serve(id, 4, 1.0); }, ErrorCode::Nccl, "missing ranks 1, 3");
  const double took = seconds_since(t0);
  CHECK(took >= 0.9);
  CHECK(took < 10);
  peer.join();
  CHECK(got == id);  // the one that came was served

  // A peer whose process 0 never starts.
  const int dead = free_port();
  const auto t1 = Clock::now();
  require_error([&] { bootstrap_receive("127.0.0.1", dead, 1, 2, 0.8); }, ErrorCode::Nccl,
                "process 0 did not answer within");
  CHECK(seconds_since(t1) < 10);
}

TEST_CASE("bootstrap refuses a peer with another world size", "[multi_gpu][bootstrap]") {
  const std::vector<uint8_t> id = random_payload(6);
  BootstrapServer server(0);
  std::string peer_error;
  std::thread peer([&] {
    try {
      bootstrap_receive("127.0.0.1", server.port(), 1, 3, 20);
    } catch (const Error& e) {
      peer_error = e.what();
    }
  });
  require_error([&] { server.serve(id, 2, 20); }, ErrorCode::Nccl, "says WORLD_SIZE 3");
  peer.join();
  CHECK(peer_error.find("refused") != std::string::npos);
  CHECK(peer_error.find("WORLD_SIZE differs") != std::string::npos);
}

TEST_CASE("bootstrap refuses a second process with the same rank", "[multi_gpu][bootstrap]") {
  const std::vector<uint8_t> id = random_payload(8);
  BootstrapServer server(0);
  const int port = server.port();
  std::vector<uint8_t> first;
  std::string second_error;
  std::thread a([&] {
    try {
      first = bootstrap_receive("127.0.0.1", port, 1, 3, 20);
    } catch (const Error&) {
    }
  });
  std::thread server_thread;
  std::string server_error;
  server_thread = std::thread([&] {
    try {
      server.serve(id, 3, 20);
    } catch (const Error& e) {
      server_error = e.what();
    }
  });
  a.join();  // rank 1 has its id; now a second rank 1
  try {
    bootstrap_receive("127.0.0.1", port, 1, 3, 20);
  } catch (const Error& e) {
    second_error = e.what();
  }
  server_thread.join();
  CHECK(first == id);
  CHECK(server_error.find("another process has this rank") != std::string::npos);
  CHECK(second_error.find("refused") != std::string::npos);
}

TEST_CASE("bootstrap ignores a stray connection and serves the real peer",
          "[multi_gpu][bootstrap]") {
  const std::vector<uint8_t> id = random_payload(9);
  BootstrapServer server(0);
  const int port = server.port();
  std::thread stray([&] {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      const char junk[] = "GET / HTTP/1.0\r\n\r\n";
      (void)::send(fd, junk, sizeof junk - 1, MSG_NOSIGNAL);
    }
    ::close(fd);
  });
  stray.join();
  std::vector<uint8_t> got;
  std::thread peer([&] {
    try {
      got = bootstrap_receive("127.0.0.1", port, 1, 2, 20);
    } catch (const Error&) {
    }
  });
  const std::string served = serve_noexcept(server, id, 2);
  peer.join();
  CHECK(served.empty());
  CHECK(got == id);
}

// ---- on a GPU: world size 1 through NCCL
// ---------------------------------------------------------

namespace {

SyntheticSpec spec_for(Family f, uint64_t seed);

// Exits 77 (skipped) unless this build has CUDA and NCCL and the machine a GPU; first checks
// that the backend factory says why it cannot run.
void require_nccl_gpu() {
  const GpuInfo info = query_gpu();
  bool built = false;
#if defined(MOE_HAVE_CUDA) && defined(MOE_HAVE_NCCL)
  built = true;
#endif
  if (info.available && built) return;
  try {
    TempDir tmp;
    write_synthetic_checkpoint(tmp / "ckpt", spec_for(Family::Mixtral, 2));
    make_multi_gpu_backend(ShardSet::from_checkpoint(tmp / "ckpt"), MultiGpuOptions{});
    std::fprintf(stderr, "make_multi_gpu_backend() did not throw\n");
    std::exit(1);
  } catch (const Error& e) {
    const bool ok = e.code() == ErrorCode::Cuda || e.code() == ErrorCode::Nccl;
    if (!ok) {
      std::fprintf(stderr, "make_multi_gpu_backend() threw %s\n", e.what());
      std::exit(1);
    }
    std::fprintf(stderr, "skipped: %s\n", e.what());
  }
  std::exit(77);
}

SyntheticSpec spec_for(Family f, uint64_t seed) {
  SyntheticSpec s;
  s.family = f;
  s.num_layers = 2;
  s.hidden_size = 40;
  s.moe_intermediate_size = 12;
  s.dense_intermediate_size = 16;
  s.num_experts = 10;
  s.top_k = 3;
  s.vocab_size = 16;
  s.seed = seed;
  s.threads = 1;
  return s;
}

// TP 2 x EP 2 with 2 redundant experts: 4 ranks.
std::string tp2_ep2(const TempDir& tmp, Family f, uint64_t seed) {
  const std::string ckpt = tmp / (std::string(family_name(f)) + "-ckpt");
  write_synthetic_checkpoint(ckpt, spec_for(f, seed));
  ConvertOptions o;
  o.plan.tp = 2;
  o.plan.ep = 2;
  o.plan.redundant_experts = 2;
  o.plan.placement = Placement::RoundRobin;
  o.threads = 1;
  o.quiet = true;
  o.moe_only = true;
  const std::string out = tmp / (std::string(family_name(f)) + "-tp2ep2");
  convert_checkpoint(ckpt, out, o);
  return out;
}

RunOptions quiet_run(int tokens) {
  RunOptions o;
  o.tokens = tokens;
  o.threads = 2;
  o.quiet = true;
  return o;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b, double* ref_norm) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  *ref_norm = std::sqrt(den);
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace

TEST_CASE("world size 1 through NCCL matches the single-GPU backend on TP2 x EP2",
          "[gpu][multi_gpu]") {
  require_nccl_gpu();
  TempDir tmp;
  uint64_t seed = 300;
  for (Family f : {Family::DeepseekV3, Family::GptOss, Family::Qwen2Moe}) {
    const ShardSet set = ShardSet::open(tp2_ep2(tmp, f, ++seed));
    REQUIRE(set.ranks().size() == 4);
    MultiGpuOptions o;
    o.gpus = 1;  // all four ranks in turn on one GPU, then the all-reduce
    o.timeout_s = 60;
    auto multi = make_multi_gpu_backend(set, o);
    CHECK(multi->world().world_size == 1);
    CHECK(multi->world().ranks_of_member[0] == std::vector<int>{0, 1, 2, 3});
    CHECK(!multi->nccl_version().empty());
    auto single = make_cuda_backend();
    const int H = set.geometry().hidden_size, K = set.profile().top_k;
    for (int layer : set.profile().moe_layers) {
      for (int tokens : {1, 37}) {
        INFO(family_name(f) << " layer " << layer << ", " << tokens << " tokens");
        const std::vector<float> x = random_hidden_states(tokens, H, seed, layer);
        std::vector<int32_t> ids_a(size_t(tokens) * K), ids_b(ids_a.size());
        std::vector<float> w_a(ids_a.size()), w_b(ids_a.size());
        std::vector<float> out_a(size_t(tokens) * H, NAN), out_b(out_a.size(), NAN);
        multi->run_layer(set, layer, x.data(), tokens, {ids_a.data(), w_a.data(), out_a.data()});
        single->run_layer(set, layer, x.data(), tokens, {ids_b.data(), w_b.data(), out_b.data()});
        CHECK(ids_a == ids_b);
        CHECK(w_a == w_b);
        double norm = 0;
        const double err = rel_l2(out_a, out_b, &norm);
        CHECK(norm > 0);
        CHECK(err <= 1e-6);  // same kernels and order; the 1-member all-reduce is a copy
      }
    }
  }
}

TEST_CASE("run through NCCL passes the reference; every visible GPU, several ranks each",
          "[gpu][multi_gpu]") {
  require_nccl_gpu();
  TempDir tmp;
  const ShardSet set = ShardSet::open(tp2_ep2(tmp, Family::Llama4, 410));
  MultiGpuOptions o;  // all visible GPUs, at most one per rank
  o.timeout_s = 60;
  auto backend = make_multi_gpu_backend(set, o);
  const RunReport r = run_check(set, *backend, "tp2ep2", quiet_run(111));
  REQUIRE(r.layers.size() == set.profile().moe_layers.size());
  for (const LayerResult& l : r.layers) {
    INFO("layer " << l.layer << " rel_l2 " << l.metrics.rel_l2 << " note " << l.note);
    CHECK(l.pass);
    CHECK(l.metrics.rel_l2 > 0);
    CHECK(l.routing_agreement >= 0.9);
  }
  CHECK(r.pass);
}

TEST_CASE("launcher mode with world size 1 forms its world through the TCP bootstrap",
          "[gpu][multi_gpu]") {
  require_nccl_gpu();
  TempDir tmp;
  const std::string ckpt = tmp / "ckpt";
  write_synthetic_checkpoint(ckpt, spec_for(Family::Mixtral, 77));
  const ShardSet set = ShardSet::from_checkpoint(ckpt);
  MultiGpuOptions o;
  o.launcher = LauncherEnv{"torchrun", 0, 1, 0, "127.0.0.1", free_port()};
  o.timeout_s = 60;
  auto backend = make_multi_gpu_backend(set, o);
  CHECK(backend->world().launcher.has_value());
  const RunReport r = run_check(set, *backend, ckpt, quiet_run(19));
  CHECK(r.pass);
}

TEST_CASE("a failing member names its GPU and leaves the world aborted, not hung",
          "[gpu][multi_gpu]") {
  require_nccl_gpu();
  TempDir tmp;
  const ShardSet set = ShardSet::open(tp2_ep2(tmp, Family::Qwen2Moe, 55));
  MultiGpuOptions o;
  o.gpus = 1;
  o.timeout_s = 30;
  auto backend = make_multi_gpu_backend(set, o);
  const int H = set.geometry().hidden_size, K = set.profile().top_k;
  const std::vector<float> x = random_hidden_states(5, H, 1, 0);
  std::vector<int32_t> ids(size_t(5) * K);
  std::vector<float> w(ids.size()), out(size_t(5) * H);
  const auto t0 = Clock::now();
  // Layer 99 is in no shard: the member's shard lookup fails inside its thread.
  require_error(
      [&] {
        backend->run_layer(set, 99, x.data(), 5, {ids.data(), w.data(), out.data()});
      },
      ErrorCode::InvalidShard, "GPU 0 (NCCL rank 0 of 1)");
  CHECK(seconds_since(t0) < 20);
  const int layer = set.profile().moe_layers.front();
  require_error(
      [&] {
        backend->run_layer(set, layer, x.data(), 5, {ids.data(), w.data(), out.data()});
      },
      ErrorCode::Nccl, "aborted after an earlier error");

  // A world that does not fit this machine is refused before NCCL starts.
  MultiGpuOptions too_many;
  too_many.gpus = query_gpu().device_count + 1;
  require_error([&] { make_multi_gpu_backend(set, too_many); }, ErrorCode::InvalidArgument,
                "visible CUDA device");
}

#ifdef MOE_HAVE_NCCL
TEST_CASE("the watchdog aborts an NCCL init whose peer never joins", "[gpu][multi_gpu]") {
  require_nccl_gpu();
  std::atomic<bool> flag{false};
  {
    NcclComm comm;
    const auto t0 = Clock::now();
    require_error(
        [&] {
          comm.init(nccl_unique_id(), 2, 0, Watchdog{2.0, &flag, "test member"});
        },
        ErrorCode::Nccl, "did not complete within 2 s");
    const double took = seconds_since(t0);
    CHECK(took >= 1.5);
    CHECK(took < 30);
    CHECK(!comm.ok());
  }
  {
    // Another member's failure (the flag) stops the wait long before the timeout.
    NcclComm comm;
    std::thread raiser([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      flag = true;
    });
    const auto t0 = Clock::now();
    try {
      comm.init(nccl_unique_id(), 2, 0, Watchdog{120.0, &flag, "test member"});
      FAIL("init of a 2-member world with one member returned");
    } catch (const PeerAborted& e) {
      CHECK(std::string(e.what()).find("another GPU of the run failed") != std::string::npos);
    }
    raiser.join();
    CHECK(seconds_since(t0) < 30);
  }
}
#endif

TEST_CASE("bench --gpus: per-rank kernel and all-reduce times", "[gpu][multi_gpu]") {
  require_nccl_gpu();
  TempDir tmp;
  const std::string set_dir = tp2_ep2(tmp, Family::Qwen2Moe, 66);
  const ShardSet set = ShardSet::open(set_dir);
  MultiGpuOptions o;
  o.gpus = 1;
  o.timeout_s = 60;

  BenchOptions b;
  b.shape = {"small", 8, 2, 256, 128};
  b.tokens = {1, 33};
  b.measure_ceilings = false;
  b.quiet = true;
  MultiGpuBenchReport r = run_multi_gpu_bench(b, o);
  REQUIRE(r.cells.size() == 2);
  for (const auto& c : r.cells) {
    INFO(c.tokens << " tokens");
    REQUIRE(c.ranks.size() == 1);
    CHECK(c.ranks[0].experts == 8);
    CHECK(c.ranks[0].kernel_us > 0);
    REQUIRE(c.members.size() == 1);
    CHECK(c.members[0].allreduce_us > 0);
    CHECK(c.allreduce_bytes == double(c.tokens) * 256 * 4);
    CHECK(c.step_us == Approx(c.members[0].kernel_us_sum + c.allreduce_us));
  }
  const nlohmann::json j = multi_gpu_bench_to_json(r);
  CHECK(j["cells"][1]["ranks"][0]["kernel_us"].get<double>() > 0);

  b.source = set_dir;
  b.tokens = {19};
  r = run_multi_gpu_bench(b, o);
  REQUIRE(r.cells.size() == 1);
  REQUIRE(r.cells[0].ranks.size() == 4);
  int experts = 0;
  for (const auto& rk : r.cells[0].ranks) {
    CHECK(rk.kernel_us > 0);
    CHECK(std::isfinite(rk.kernel_us));
    experts += rk.experts;
  }
  CHECK(experts == 2 * (10 + 2));  // TP 2 copies of E + R physical experts
  CHECK(r.cells[0].members[0].kernel_us_sum > r.cells[0].ranks[0].kernel_us);
}

TEST_CASE("run and bench --gpus 1 through the CLI", "[gpu][multi_gpu][cli]") {
  require_nccl_gpu();
  TempDir tmp;
  const std::string set_dir = tp2_ep2(tmp, Family::Mixtral, 88);
  ToolResult r = run_tool("run " + set_dir + " --gpus 1 --tokens 23 --json --quiet", tmp);
  INFO(r.err);
  REQUIRE(r.rc == 0);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  CHECK(j["pass"] == true);
  CHECK(j["world"]["world_size"] == 1);
  CHECK(j["world"]["members"][0]["ranks"] == nlohmann::json::array({0, 1, 2, 3}));
  CHECK(!j["world"]["nccl_version"].get<std::string>().empty());

  r = run_tool("run " + set_dir + " --gpus 1 --tokens 5 --quiet", tmp);
  CHECK(r.rc == 0);
  CHECK(r.out.find("GPU 0 runs ranks 0, 1, 2, 3") != std::string::npos);

  r = run_tool("bench " + set_dir + " --gpus 1 --tokens 1,17 --json --quiet", tmp);
  INFO(r.err);
  REQUIRE(r.rc == 0);
  const nlohmann::json b = nlohmann::json::parse(r.out);
  REQUIRE(b["cells"].size() == 2);
  CHECK(b["cells"][1]["ranks"].size() == 4);
  CHECK(b["cells"][1]["allreduce_us"].get<double>() > 0);
}
