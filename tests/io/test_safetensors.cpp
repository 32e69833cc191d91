// safetensors reader and writer: round trips of every dtype, the byte layout the writer
// promises, one test case per rejection rule of formats.md 1.2 on files made here, truncation
// and mutation robustness, and the writer's atomicity.
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/parallel.h"
#include "io/io_fixtures.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "support/temp_dir.h"

using namespace moe;
using namespace moe::test;
namespace fs = std::filesystem;

namespace {

// A random shape with a valid element count for `dt` (F4: even, F6: a multiple of 4).
Shape random_shape(DType dt) {
  std::uniform_int_distribution<int64_t> dim(1, 7);
  Shape s = {dim(io_rng()), dim(io_rng())};
  if (dtype_bits(dt) == 4) s.back() *= 2;
  if (dtype_bits(dt) == 6) s.back() *= 4;
  return s;
}

OwnedTensor random_tensor(const std::string& name, DType dt, const Shape& shape) {
  const uint64_t n = *dtype_bytes(dt, static_cast<uint64_t>(shape_numel(shape)));
  return {name, dt, shape, random_bytes(n)};
}

void check_same(const SafetensorsFile& f, const OwnedTensor& t) {
  INFO("tensor " << t.name);
  REQUIRE(f.has(t.name));
  const TensorView v = f.view(t.name);
  CHECK(v.dtype == t.dtype);
  CHECK(v.shape == t.shape);
  REQUIRE(v.nbytes == t.bytes.size());
  CHECK((t.bytes.empty() || std::memcmp(v.data, t.bytes.data(), t.bytes.size()) == 0));
}

// Opens `bytes` as a file and returns the error it must raise; checks the code, that the message
// names the file, and (when given) the tensor.
Error reject(const std::vector<uint8_t>& bytes, ErrorCode code, const std::string& tensor = "") {
  TempDir dir;
  const std::string path = dir / "bad.safetensors";
  write_bytes(path, bytes);
  auto err = catch_error([&] { SafetensorsFile f(path); });
  REQUIRE(err.has_value());
  INFO(err->what());
  CHECK(error_code_name(err->code()) == std::string(error_code_name(code)));
  CHECK(err->file() == path);
  CHECK(std::string(err->what()).find(path) != std::string::npos);
  if (!tensor.empty()) {
    CHECK(err->tensor() == tensor);
    CHECK(std::string(err->what()).find("'" + tensor + "'") != std::string::npos);
  }
  return *err;
}

// Same rule through the pure parser, without a file.
ErrorCode parse_code(const std::vector<uint8_t>& bytes) {
  auto err = catch_error(
      [&] { parse_safetensors_header(bytes.data(), bytes.size(), bytes.size(), "mem"); });
  REQUIRE(err.has_value());
  return err->code();
}

std::string info(const std::string& dtype, const std::string& shape, uint64_t b, uint64_t e) {
  return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(b) + "," + std::to_string(e) + "]}";
}

uint64_t le64(const std::vector<uint8_t>& b) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | b[i];
  return n;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Round trips and layout

TEST_CASE("writer -> reader round trip of every dtype, 0-rank, empty tensors and metadata",
          "[io][safetensors]") {
  CAPTURE(io_seed());
  TempDir dir;
  std::vector<OwnedTensor> tensors;
  for (int i = 0; i < static_cast<int>(DType::kCount); ++i) {
    const auto dt = static_cast<DType>(i);
    tensors.push_back(random_tensor(std::string("t.") + dtype_name(dt), dt, random_shape(dt)));
  }
  tensors.push_back(random_tensor("scalar.f32", DType::F32, {}));
  tensors.push_back(random_tensor("scalar.u8", DType::U8, {}));
  tensors.push_back(random_tensor("empty.bf16", DType::BF16, {0}));
  tensors.push_back(random_tensor("empty.f32", DType::F32, {3, 0, 2}));
  tensors.push_back(random_tensor("empty.f4", DType::F4, {0}));
  const std::map<std::string, std::string> meta = {{"format", "pt"},
                                                   {"note", "unicode \xc3\xbc \xe2\x9c\x93"}};
  const std::string path = dir / "all.safetensors";
  write_safetensors(path, tensors, meta);

  SafetensorsFile f(path);
  CHECK(f.header().metadata == meta);
  REQUIRE(f.header().tensors.size() == tensors.size());
  for (const auto& t : tensors) check_same(f, t);
  CHECK(f.view("scalar.f32").numel() == 1);
  CHECK(f.view("empty.f32").numel() == 0);
  CHECK(f.mapped().size() == fs::file_size(path));
  auto missing = catch_error([&] { f.entry("nope"); });
  REQUIRE(missing);
  CHECK(missing->code() == ErrorCode::MissingTensor);
}

TEST_CASE("writer layout is byte-exact: padded header, aligned data, no gaps", "[io][safetensors]") {
  CAPTURE(io_seed());
  TempDir dir;
  const std::string path = dir / "layout.safetensors";
  // Sizes 12, 32, 5, 16, 6, 4, 0 bytes: groups by size mod 8 decide the data order.
  std::vector<OwnedTensor> ts = {
      random_tensor("a", DType::F32, {3}),     random_tensor("b", DType::BF16, {4, 4}),
      random_tensor("c", DType::U8, {5}),      random_tensor("d", DType::F64, {2}),
      random_tensor("e", DType::I16, {3}),     random_tensor("f", DType::F32, {}),
      random_tensor("g", DType::F16, {0, 3})};
  const std::map<std::string, uint64_t> want_begin = {{"b", 0},  {"d", 32}, {"g", 48}, {"a", 48},
                                                      {"f", 60}, {"e", 64}, {"c", 70}};
  {
    SafetensorsWriter w(path, {{"k", "v"}});
    for (const auto& t : ts) w.declare(t.name, t.dtype, t.shape);
    w.begin_data();
    for (const auto& t : ts) w.append(t.bytes.data(), t.bytes.size());
    const uint64_t data_start = w.total_bytes() - 75;
    CHECK(data_start % 8 == 0);
    for (const auto& t : ts) CHECK(w.file_offset(t.name) - data_start == want_begin.at(t.name));
    CHECK(w.total_bytes() == fs::file_size(w.temp_path()));
    w.commit();
  }
  const std::vector<uint8_t> raw = read_bytes(path);
  const uint64_t n = le64(raw);
  CHECK(n % 8 == 0);
  REQUIRE(raw.size() == 8 + n + 75);
  const std::string header(raw.begin() + 8, raw.begin() + 8 + static_cast<long>(n));
  CHECK(header.front() == '{');
  const size_t close = header.find_last_of('}');
  CHECK(header.find_first_not_of(' ', close + 1) == std::string::npos);  // space padding only
  const auto j = nlohmann::json::parse(header);
  CHECK(j.at("__metadata__").at("k") == "v");
  for (const auto& t : ts) {
    INFO(t.name);
    const auto offs = j.at(t.name).at("data_offsets");
    const uint64_t b = offs[0], e = offs[1];
    CHECK(b == want_begin.at(t.name));
    CHECK(e - b == t.bytes.size());
    const uint64_t elem = std::max(1, dtype_bits(t.dtype) / 8);
    CHECK(b % elem == 0);
    if (t.bytes.size() % 8 == 0) CHECK(b % 8 == 0);
    CHECK(std::equal(t.bytes.begin(), t.bytes.end(), raw.begin() + static_cast<long>(8 + n + b)));
  }
}

TEST_CASE("writer keeps declaration order when every size is a multiple of 8", "[io][safetensors]") {
  CAPTURE(io_seed());
  TempDir dir;
  std::vector<OwnedTensor> ts = {random_tensor("zz", DType::BF16, {4, 8}),
                                 random_tensor("aa", DType::F32, {2, 6}),
                                 random_tensor("mm", DType::U8, {16})};
  write_safetensors(dir / "o.safetensors", ts);
  SafetensorsFile f(dir / "o.safetensors");
  CHECK(f.entry("zz").begin == 0);
  CHECK(f.entry("aa").begin == 64);
  CHECK(f.entry("mm").begin == 112);
  CHECK(f.header().data_offset % 8 == 0);
}

TEST_CASE("writer append() in arbitrary pieces spanning tensors", "[io][safetensors]") {
  CAPTURE(io_seed());
  TempDir dir;
  std::vector<OwnedTensor> ts;
  for (int i = 0; i < 6; ++i) ts.push_back(random_tensor("w" + std::to_string(i), DType::BF16, random_shape(DType::BF16)));
  ts.insert(ts.begin() + 2, random_tensor("hole", DType::F32, {0}));
  std::vector<uint8_t> all;
  for (const auto& t : ts) all.insert(all.end(), t.bytes.begin(), t.bytes.end());
  const std::string path = dir / "p.safetensors";
  SafetensorsWriter w(path, {});
  for (const auto& t : ts) w.declare(t.name, t.dtype, t.shape);
  w.begin_data();
  std::uniform_int_distribution<size_t> piece(1, 23);
  for (size_t at = 0; at < all.size();) {
    const size_t k = std::min(piece(io_rng()), all.size() - at);
    w.append(all.data() + at, k);
    at += k;
  }
  auto past = catch_error([&] { w.append(all.data(), 1); });
  REQUIRE(past);
  CHECK(past->code() == ErrorCode::InvalidArgument);
  auto mixed = catch_error([&] { w.write_at("w0", 0, all.data(), 1); });
  REQUIRE(mixed);
  CHECK(mixed->code() == ErrorCode::InvalidArgument);
  w.commit();
  SafetensorsFile f(path);
  for (const auto& t : ts) check_same(f, t);
}

TEST_CASE("writer write_at() from parallel threads", "[io][safetensors]") {
  CAPTURE(io_seed());
  TempDir dir;
  std::vector<OwnedTensor> ts;
  for (int i = 0; i < 8; ++i)
    ts.push_back(random_tensor("e" + std::to_string(i), i % 2 ? DType::F32 : DType::U8, {37, 11}));
  const std::string path = dir / "par.safetensors";
  SafetensorsWriter w(path, {{"rank", "0"}});
  for (const auto& t : ts) w.declare(t.name, t.dtype, t.shape);
  w.begin_data();
  // Each task writes one tensor back to front in 3 pieces, so order across threads is arbitrary.
  parallel_for(static_cast<int64_t>(ts.size()), 2, [&](int64_t i) {
    const auto& t = ts[static_cast<size_t>(i)];
    const uint64_t n = t.bytes.size(), a = n / 3, b = 2 * n / 3;
    w.write_at(t.name, b, t.bytes.data() + b, n - b);
    w.write_at(t.name, a, t.bytes.data() + a, b - a);
    w.write_at(t.name, 0, t.bytes.data(), a);
  });
  auto over = catch_error([&] { w.write_at("e0", 400, ts[0].bytes.data(), 8); });
  REQUIRE(over);
  CHECK(over->code() == ErrorCode::InvalidArgument);
  CHECK(over->tensor() == "e0");
  w.commit();
  SafetensorsFile f(path);
  for (const auto& t : ts) check_same(f, t);
}

TEST_CASE("writer rejects bad declarations and incomplete data", "[io][safetensors]") {
  TempDir dir;
  const std::string path = dir / "x.safetensors";
  SafetensorsWriter w(path, {});
  w.declare("a", DType::F32, {2});
  auto dup = catch_error([&] { w.declare("a", DType::F32, {2}); });
  REQUIRE(dup);
  CHECK(dup->code() == ErrorCode::DuplicateTensor);
  auto odd = catch_error([&] { w.declare("f4", DType::F4, {3}); });
  REQUIRE(odd);
  CHECK(odd->code() == ErrorCode::MisalignedSlice);
  CHECK(odd->tensor() == "f4");
  auto neg = catch_error([&] { w.declare("neg", DType::F32, {2, -1}); });
  REQUIRE(neg);
  w.begin_data();
  const float v = 1.5f;
  w.append(&v, sizeof v);
  auto early = catch_error([&] { w.commit(); });
  REQUIRE(early);
  CHECK(early->code() == ErrorCode::InvalidArgument);
  CHECK(!fs::exists(path));
  auto sizes = catch_error([&] {
    write_safetensors(dir / "y.safetensors", {{"t", DType::BF16, {3}, std::vector<uint8_t>(5)}});
  });
  REQUIRE(sizes);
  CHECK(sizes->tensor() == "t");
  CHECK(!fs::exists(dir / "y.safetensors"));
}

TEST_CASE("writer is atomic: nothing at PATH until commit, no temporary left", "[io][safetensors]") {
  CAPTURE(io_seed());
  TempDir dir;
  const std::string path = dir / "shard.safetensors";
  const OwnedTensor t = random_tensor("w", DType::BF16, {16, 8});
  {
    SafetensorsWriter w(path, {});
    w.declare(t.name, t.dtype, t.shape);
    w.begin_data();
    w.append(t.bytes.data(), t.bytes.size());
    CHECK(fs::exists(w.temp_path()));
    CHECK(w.temp_path().rfind(path + ".tmp-", 0) == 0);
    CHECK(!fs::exists(path));
  }  // destroyed without commit
  CHECK(fs::is_empty(dir.path()));

  write_text(path, "previous contents");
  {
    SafetensorsWriter w(path, {});
    w.declare(t.name, t.dtype, t.shape);
    w.begin_data();
  }
  CHECK(read_text(path) == "previous contents");  // an unfinished writer never clobbers
  {
    SafetensorsWriter w(path, {});
    w.declare(t.name, t.dtype, t.shape);
    w.begin_data();
    w.append(t.bytes.data(), t.bytes.size());
    w.commit();
  }
  SafetensorsFile f(path);
  check_same(f, t);
  CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 1);
}

TEST_CASE("writer turns a failing write into Error{Io} naming the path", "[io][safetensors]") {
  CAPTURE(io_seed());
  TempDir dir;
  const std::string path = dir / "big.safetensors";
  // A file-size limit makes writes past 64 KiB fail with EFBIG, as a full disk fails with ENOSPC.
  struct rlimit old {};
  REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 64 * 1024;
  REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
  auto err = catch_error([&] {
    write_safetensors(path, {random_tensor("w", DType::F32, {512, 512})});
  });
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  REQUIRE(err);
  INFO(err->what());
  CHECK(err->code() == ErrorCode::Io);
  CHECK(err->file() == path);
  CHECK(!fs::exists(path));
  CHECK(fs::is_empty(dir.path()));
}

// ---------------------------------------------------------------------------------------------
// MappedFile

TEST_CASE("MappedFile maps, moves and reports missing or odd files", "[io][mmap]") {
  CAPTURE(io_seed());
  TempDir dir;
  const auto bytes = random_bytes(5000);
  write_bytes(dir / "f.bin", bytes);
  MappedFile a(dir / "f.bin");
  REQUIRE(a.size() == bytes.size());
  CHECK(std::memcmp(a.data(), bytes.data(), bytes.size()) == 0);
  a.advise_sequential();
  MappedFile b(std::move(a));
  CHECK(a.data() == nullptr);
  CHECK(b.size() == bytes.size());
  CHECK(b.data()[4999] == bytes[4999]);

  write_bytes(dir / "empty.bin", {});
  MappedFile e(dir / "empty.bin");
  CHECK(e.size() == 0);
  CHECK(e.data() == nullptr);
  b = std::move(e);
  CHECK(b.size() == 0);

  for (const std::string p : {dir / "missing.bin", dir.path()}) {
    auto err = catch_error([&] { MappedFile m(p); });
    REQUIRE(err);
    CHECK(err->code() == ErrorCode::Io);
    CHECK(err->file() == p);
  }
}

// ---------------------------------------------------------------------------------------------
// Accepted inputs that a careless reader rejects

TEST_CASE("reader tolerates unaligned offsets, shared empty offsets, extra fields, padding",
          "[io][safetensors]") {
  CAPTURE(io_seed());
  std::uniform_real_distribution<float> u(-4.f, 4.f);
  const float ref[2] = {u(io_rng()), u(io_rng())};
  std::vector<uint8_t> data = random_bytes(3);
  data.resize(11);
  std::memcpy(data.data() + 3, ref, 8);  // F32 data at offset 3: unaligned
  std::string header = "  {\"__metadata__\":null,\"b\":" + info("U8", "[3]", 0, 3) +
                             ",\"f\":{\"dtype\":\"F32\",\"extra\":{\"x\":[1,[2]]},\"shape\":[2],"
                             "\"data_offsets\":[3,11]},\"e1\":" + info("F16", "[0]", 3, 3) +
                             ",\"e2\":" + info("I64", "[4,0]", 3, 3) + "}    ";
  header.append((8 - header.size() % 8) % 8, ' ');  // data at 8 + n + 3: never 4-aligned
  TempDir dir;
  write_bytes(dir / "u.safetensors", raw_safetensors(header, data));
  SafetensorsFile f(dir / "u.safetensors");
  CHECK(f.header().metadata.empty());
  const TensorView v = f.view("f");
  CHECK(reinterpret_cast<uintptr_t>(v.data) % 4 != 0);
  CHECK(v.at(0) == double(ref[0]));
  CHECK(v.at(1) == double(ref[1]));
  CHECK(f.view("e2").nbytes == 0);
  CHECK(f.header().tensors.size() == 4);
  CHECK(f.header().tensors[0].name == "b");  // header order is kept

  SafetensorsHeader empty = parse_safetensors_header(
      raw_safetensors("{}", {}).data(), 10, 10, "mem");
  CHECK(empty.tensors.empty());
  CHECK(empty.data_offset == 10);
}

// ---------------------------------------------------------------------------------------------
// One test case per rejection rule (formats.md 1.2)

TEST_CASE("HeaderTooSmall: a file shorter than 8 bytes", "[io][safetensors][reject]") {
  for (size_t n : {0, 1, 7}) {
    CAPTURE(n);
    reject(random_bytes(n), ErrorCode::HeaderTooSmall);
  }
}

TEST_CASE("HeaderTooLarge: n above 100,000,000", "[io][safetensors][reject]") {
  reject(raw_safetensors("{}", {}, 100'000'001), ErrorCode::HeaderTooLarge);
  reject(raw_safetensors("{}", {}, UINT64_MAX), ErrorCode::HeaderTooLarge);
  // The limit itself is allowed; this small file then fails on its length instead.
  reject(raw_safetensors("{}", {}, 100'000'000), ErrorCode::InvalidHeaderLength);
}

TEST_CASE("InvalidHeaderLength: 8 + n past the end of the file", "[io][safetensors][reject]") {
  reject(raw_safetensors("{}      ", {}, 64), ErrorCode::InvalidHeaderLength);   // 16-byte file
  reject(raw_safetensors("{}", {}, 3), ErrorCode::InvalidHeaderLength);          // one byte short
  reject(raw_safetensors("", {}, 1), ErrorCode::InvalidHeaderLength);            // 8-byte file
}

TEST_CASE("InvalidHeader: bad UTF-8, bad JSON, not an object, too deep", "[io][safetensors][reject]") {
  const std::string ok = info("U8", "[1]", 0, 1);
  SECTION("invalid UTF-8 byte") { reject(raw_safetensors("{\"a\xff\":" + ok + "}", {7}), ErrorCode::InvalidHeader); }
  SECTION("overlong encoding") { reject(raw_safetensors("{\"\xc0\xaf\":" + ok + "}", {7}), ErrorCode::InvalidHeader); }
  SECTION("UTF-16 surrogate") { reject(raw_safetensors("{\"\xed\xa0\x80\":" + ok + "}", {7}), ErrorCode::InvalidHeader); }
  SECTION("truncated sequence at the end") { reject(raw_safetensors("{}\xe2\x9c", {}), ErrorCode::InvalidHeader); }
  SECTION("unterminated JSON") { reject(raw_safetensors("{\"a\": ", {}), ErrorCode::InvalidHeader); }
  SECTION("empty header") { reject(raw_safetensors("", {}), ErrorCode::InvalidHeader); }
  SECTION("NUL padding instead of spaces") { reject(raw_safetensors(std::string("{}\0\0", 4), {}), ErrorCode::InvalidHeader); }
  SECTION("trailing garbage") { reject(raw_safetensors("{} x", {}), ErrorCode::InvalidHeader); }
  SECTION("an array") { reject(raw_safetensors("[1, 2]", {}), ErrorCode::InvalidHeader); }
  SECTION("a string") { reject(raw_safetensors("\"x\"", {}), ErrorCode::InvalidHeader); }
  SECTION("nested 200 deep in an ignored field") {
    const std::string deep = std::string(200, '[') + std::string(200, ']');
    reject(raw_safetensors("{\"a\":{\"dtype\":\"U8\",\"x\":" + deep +
                               ",\"shape\":[1],\"data_offsets\":[0,1]}}", {7}),
           ErrorCode::InvalidHeader);
  }
}

TEST_CASE("InvalidHeaderDeserialization: JSON that is not the safetensors schema",
          "[io][safetensors][reject]") {
  const std::vector<uint8_t> d4 = {1, 2, 3, 4};
  auto bad = [&](const std::string& body, const std::string& tensor) {
    reject(raw_safetensors("{" + body + "}", d4), ErrorCode::InvalidHeaderDeserialization, tensor);
  };
  SECTION("missing dtype") { bad("\"t\":{\"shape\":[4],\"data_offsets\":[0,4]}", "t"); }
  SECTION("missing shape") { bad("\"t\":{\"dtype\":\"U8\",\"data_offsets\":[0,4]}", "t"); }
  SECTION("missing data_offsets") { bad("\"t\":{\"dtype\":\"U8\",\"shape\":[4]}", "t"); }
  SECTION("dtype not a string") { bad("\"t\":{\"dtype\":8,\"shape\":[4],\"data_offsets\":[0,4]}", "t"); }
  SECTION("shape not an array") { bad("\"t\":{\"dtype\":\"U8\",\"shape\":4,\"data_offsets\":[0,4]}", "t"); }
  SECTION("negative dimension") { bad("\"t\":" + info("U8", "[-4]", 0, 4), "t"); }
  SECTION("fractional dimension") { bad("\"t\":" + info("U8", "[4.0]", 0, 4), "t"); }
  SECTION("dimension beyond 64 bits") { bad("\"t\":" + info("U8", "[18446744073709551616]", 0, 4), "t"); }
  SECTION("string dimension") { bad("\"t\":" + info("U8", "[\"4\"]", 0, 4), "t"); }
  SECTION("three data offsets") { bad("\"t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,4]}", "t"); }
  SECTION("one data offset") { bad("\"t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4]}", "t"); }
  SECTION("negative data offset") { bad("\"t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-1,4]}", "t"); }
  SECTION("tensor info not an object") { bad("\"t\":[\"U8\",[4],[0,4]]", "t"); }
  SECTION("duplicate field") { bad("\"t\":{\"dtype\":\"U8\",\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}", "t"); }
  SECTION("__metadata__ value not a string") { bad("\"__metadata__\":{\"v\":1},\"t\":" + info("U8", "[4]", 0, 4), ""); }
  SECTION("__metadata__ not an object") { bad("\"__metadata__\":[\"pt\"],\"t\":" + info("U8", "[4]", 0, 4), ""); }
  SECTION("__metadata__ twice") { bad("\"__metadata__\":{},\"__metadata__\":{},\"t\":" + info("U8", "[4]", 0, 4), ""); }
}

TEST_CASE("InvalidOffset: not starting at 0, gaps, overlaps, end before begin",
          "[io][safetensors][reject]") {
  const auto d8 = random_bytes(8);
  SECTION("first tensor does not begin at 0") {
    reject(raw_safetensors("{\"a\":" + info("U8", "[4]", 4, 8) + "}", d8), ErrorCode::InvalidOffset, "a");
  }
  SECTION("gap between tensors") {
    reject(raw_safetensors("{\"a\":" + info("U8", "[3]", 0, 3) + ",\"b\":" + info("U8", "[4]", 4, 8) + "}", d8),
           ErrorCode::InvalidOffset, "b");
  }
  SECTION("overlapping tensors") {
    reject(raw_safetensors("{\"a\":" + info("U8", "[6]", 0, 6) + ",\"b\":" + info("U8", "[4]", 4, 8) + "}", d8),
           ErrorCode::InvalidOffset, "b");
  }
  SECTION("end before begin") {
    reject(raw_safetensors("{\"a\":" + info("U8", "[0]", 0, 0) + ",\"b\":" + info("U8", "[8]", 0, 8) +
                               ",\"z\":" + info("U8", "[0]", 8, 4) + "}", d8),
           ErrorCode::InvalidOffset, "z");
  }
}

TEST_CASE("MisalignedSlice: sub-byte dtypes that do not fill whole bytes", "[io][safetensors][reject]") {
  reject(raw_safetensors("{\"p\":" + info("F4", "[3]", 0, 2) + "}", {1, 2}), ErrorCode::MisalignedSlice, "p");
  reject(raw_safetensors("{\"q\":" + info("F6_E2M3", "[2, 3]", 0, 5) + "}", random_bytes(5)),
         ErrorCode::MisalignedSlice, "q");
}

TEST_CASE("TensorInvalidInfo: byte span that disagrees with shape and dtype", "[io][safetensors][reject]") {
  reject(raw_safetensors("{\"w\":" + info("F32", "[2, 2]", 0, 12) + "}", random_bytes(12)),
         ErrorCode::TensorInvalidInfo, "w");
  reject(raw_safetensors("{\"s\":" + info("BF16", "[]", 0, 0) + "}", {}), ErrorCode::TensorInvalidInfo, "s");
  // An absurd but overflow-free shape: 2^40 elements claimed over 8 bytes.
  reject(raw_safetensors("{\"h\":" + info("U8", "[1099511627776]", 0, 8) + "}", random_bytes(8)),
         ErrorCode::TensorInvalidInfo, "h");
}

TEST_CASE("ValidationOverflow: shapes whose size overflows", "[io][safetensors][reject]") {
  const auto d8 = random_bytes(8);
  SECTION("element count overflows") {
    reject(raw_safetensors("{\"x\":" + info("U8", "[4294967296, 4294967296]", 0, 8) + "}", d8),
           ErrorCode::ValidationOverflow, "x");
  }
  SECTION("bit count overflows (2^62 elements)") {
    reject(raw_safetensors("{\"x\":" + info("F32", "[4611686018427387904]", 0, 8) + "}", d8),
           ErrorCode::ValidationOverflow, "x");
  }
  SECTION("a dimension beyond int64, even with a zero dimension") {
    reject(raw_safetensors("{\"x\":" + info("U8", "[0, 9223372036854775808]", 0, 0) + "}", {}),
           ErrorCode::ValidationOverflow, "x");
  }
}

TEST_CASE("MetadataIncompleteBuffer: data buffer not exactly covered", "[io][safetensors][reject]") {
  const std::string h = "{\"a\":" + info("U8", "[4]", 0, 4) + "}";
  reject(raw_safetensors(h, random_bytes(5)), ErrorCode::MetadataIncompleteBuffer);  // trailing byte
  reject(raw_safetensors(h, random_bytes(3)), ErrorCode::MetadataIncompleteBuffer);  // short
  reject(raw_safetensors("{}", random_bytes(1)), ErrorCode::MetadataIncompleteBuffer);
}

TEST_CASE("UnknownDType: a dtype string not in the table", "[io][safetensors][reject]") {
  reject(raw_safetensors("{\"a\":" + info("F128", "[1]", 0, 16) + "}", random_bytes(16)),
         ErrorCode::UnknownDType, "a");
  reject(raw_safetensors("{\"b\":" + info("f32", "[1]", 0, 4) + "}", random_bytes(4)),
         ErrorCode::UnknownDType, "b");  // names are case-sensitive
}

TEST_CASE("DuplicateTensor: the same name twice in one header", "[io][safetensors][reject]") {
  // A DOM parser would silently keep one of the two and the file would look valid.
  reject(raw_safetensors("{\"w\":" + info("U8", "[4]", 0, 4) + ",\"w\":" + info("U8", "[4]", 4, 8) + "}",
                         random_bytes(8)),
         ErrorCode::DuplicateTensor, "w");
}

// ---------------------------------------------------------------------------------------------
// Robustness

TEST_CASE("every proper prefix of a valid file is a clean error", "[io][safetensors][robust]") {
  CAPTURE(io_seed());
  TempDir dir;
  const std::string path = dir / "v.safetensors";
  write_safetensors(path,
                    {random_tensor("a", DType::BF16, {3, 5}), random_tensor("b", DType::F4, {6}),
                     random_tensor("c", DType::I64, {}), random_tensor("d", DType::U8, {0})},
                    {{"format", "pt"}});
  const std::vector<uint8_t> full = read_bytes(path);
  const uint64_t data_offset = 8 + le64(full);
  for (size_t len = 0; len < full.size(); ++len) {
    CAPTURE(len);
    const std::vector<uint8_t> prefix(full.begin(), full.begin() + static_cast<long>(len));
    const ErrorCode want = len < 8                 ? ErrorCode::HeaderTooSmall
                           : len < data_offset     ? ErrorCode::InvalidHeaderLength
                                                   : ErrorCode::MetadataIncompleteBuffer;
    CHECK(parse_code(prefix) == want);
  }
  // And through real files, including the empty one.
  for (size_t len : {size_t(0), size_t(7), size_t(8), size_t(data_offset - 1),
                     size_t(data_offset), full.size() - 1}) {
    CAPTURE(len);
    const std::vector<uint8_t> prefix(full.begin(), full.begin() + static_cast<long>(len));
    write_bytes(dir / "p.safetensors", prefix);
    auto err = catch_error([&] { SafetensorsFile f(dir / "p.safetensors"); });
    REQUIRE(err);
  }
  SafetensorsFile whole(path);  // and the full file is fine
  CHECK(whole.header().tensors.size() == 4);
}

TEST_CASE("random mutations of a valid file never crash or leak non-moe errors",
          "[io][safetensors][robust]") {
  CAPTURE(io_seed());
  TempDir dir;
  const std::string path = dir / "m.safetensors";
  write_safetensors(path, {random_tensor("x", DType::F32, {2, 3}), random_tensor("y", DType::U8, {5}),
                           random_tensor("z", DType::F4, {4})});
  const std::vector<uint8_t> base = read_bytes(path);
  const uint64_t data_offset = 8 + le64(base);
  std::uniform_int_distribution<size_t> pos(0, static_cast<size_t>(data_offset) - 1);
  const std::string alphabet = "{}[]\",:0123456789-.e \\u\x80\xff";
  int accepted = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<uint8_t> m = base;
    const int edits = 1 + static_cast<int>(io_rng()() % 3);
    for (int k = 0; k < edits; ++k) {
      const size_t p = pos(io_rng());
      switch (io_rng()() % 3) {
        case 0: m[p] = static_cast<uint8_t>(io_rng()()); break;
        case 1: m[p] = static_cast<uint8_t>(alphabet[io_rng()() % alphabet.size()]); break;
        default: m.erase(m.begin() + static_cast<long>(p)); break;
      }
    }
    try {
      const auto h = parse_safetensors_header(m.data(), m.size(), m.size(), "mut");
      ++accepted;
      for (const auto& t : h.tensors) {  // anything accepted must be self-consistent
        REQUIRE(t.begin <= t.end);
        REQUIRE(h.data_offset + t.end <= m.size());
        REQUIRE(*dtype_bytes(t.dtype, static_cast<uint64_t>(shape_numel(t.shape))) == t.end - t.begin);
      }
    } catch (const Error&) {
      ++rejected;
    }
  }
  CHECK(rejected > 0);
  INFO("accepted " << accepted);
}
