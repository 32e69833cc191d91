#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"

namespace moe {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // MAX_HEADER_SIZE of tensor.rs
constexpr size_t kMaxJsonDepth = 128;              // serde_json's recursion limit
constexpr const char* kMetadataKey = "__metadata__";

// Offset of the first byte that breaks UTF-8 (RFC 3629: no overlong forms, no surrogates,
// nothing above U+10FFFF), or n when all is well. Rust's str::from_utf8 applies the same rules.
// NUL is refused too: it is never valid in JSON text, but nlohmann's lexer reads it as the end
// of input, so `{}\0<anything>` would otherwise parse.
size_t first_invalid_utf8(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    if (c == 0) return i;
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c == 0xe0) { len = 3; lo = 0xa0; }
    else if (c == 0xed) { len = 3; hi = 0x9f; }  // U+D800..DFFF are surrogates
    else if (c >= 0xe1 && c <= 0xef) len = 3;
    else if (c == 0xf0) { len = 4; lo = 0x90; }
    else if (c >= 0xf1 && c <= 0xf3) len = 4;
    else if (c == 0xf4) { len = 4; hi = 0x8f; }  // <= U+10FFFF
    else return i;
    if (n - i < len) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xbf) return i;
    i += len;
  }
  return n;
}

std::string dims_str(const std::vector<uint64_t>& dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + std::to_string(dims[i]);
  return out + "]";
}

bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }

// One tensor as the JSON said it, before the offset / size rules are applied.
struct RawTensor {
  std::string name;
  std::string dtype_name;
  std::vector<uint64_t> dims;
  uint64_t offsets[2] = {0, 0};
  int n_offsets = 0;
  bool has_dtype = false, has_shape = false, has_offsets = false;
};

// A streaming (SAX) reader of the header schema. Streaming lets us see duplicate keys, which a
// DOM parse silently merges, and keeps memory proportional to what we keep, not to the JSON.
class HeaderSax : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit HeaderSax(const std::string& path) : path_(path) {}

  std::vector<RawTensor> tensors;
  std::map<std::string, std::string> metadata;

  bool null() override { return on_value(Kind::Null, 0, nullptr); }
  bool boolean(bool) override { return on_value(Kind::Other, 0, nullptr); }
  bool number_integer(number_integer_t v) override {
    // nlohmann reports only numbers written with a minus sign here; "-0" is still zero.
    return v == 0 ? on_value(Kind::Unsigned, 0, nullptr) : on_value(Kind::Negative, 0, nullptr);
  }
  bool number_unsigned(number_unsigned_t v) override { return on_value(Kind::Unsigned, v, nullptr); }
  bool number_float(number_float_t, const string_t&) override {
    return on_value(Kind::Float, 0, nullptr);
  }
  bool string(string_t& s) override { return on_value(Kind::String, 0, &s); }
  bool binary(binary_t&) override { return on_value(Kind::Other, 0, nullptr); }
  bool start_object(std::size_t) override { return on_value(Kind::Object, 0, nullptr); }
  bool start_array(std::size_t) override { return on_value(Kind::Array, 0, nullptr); }

  bool key(string_t& k) override {
    switch (stack_.back()) {
      case Ctx::Top:
        if (k == kMetadataKey)
          MOE_CHECK(!seen_metadata_, InvalidHeaderDeserialization, path_, "",
                    "duplicate key __metadata__");
        else
          MOE_CHECK(top_keys_.insert(k).second, DuplicateTensor, path_, k,
                    "tensor name appears twice in the header");
        seen_metadata_ = seen_metadata_ || k == kMetadataKey;
        break;
      case Ctx::Metadata:
        MOE_CHECK(metadata.count(k) == 0, InvalidHeaderDeserialization, path_, "",
                  "duplicate key '" + k + "' in __metadata__");
        break;
      case Ctx::Tensor:
        MOE_CHECK(field_keys_.insert(k).second, InvalidHeaderDeserialization, path_, cur_.name,
                  "duplicate field '" + k + "'");
        break;
      default:
        break;
    }
    key_ = k;
    return true;
  }

  bool end_object() override {
    Ctx c = stack_.back();
    stack_.pop_back();
    if (c == Ctx::Tensor) finish_tensor();
    return true;
  }

  bool end_array() override {
    if (stack_.back() == Ctx::Offsets)
      MOE_CHECK(cur_.n_offsets == 2, InvalidHeaderDeserialization, path_, cur_.name,
                "data_offsets must be [begin, end], got " + std::to_string(cur_.n_offsets) +
                    " numbers");
    stack_.pop_back();
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
    std::string what = ex.what();
    auto close = what.find("] ");  // drop nlohmann's "[json.exception.parse_error.101] " tag
    if (close != std::string::npos) what = what.substr(close + 2);
    fail(ErrorCode::InvalidHeader, path_, "", "header is not valid JSON: " + what);
  }

 private:
  enum class Kind { Object, Array, String, Unsigned, Negative, Float, Null, Other };
  enum class Ctx { Top, Metadata, Tensor, Dims, Offsets, Skip };

  [[noreturn]] void schema(const std::string& tensor, const std::string& detail) const {
    fail(ErrorCode::InvalidHeaderDeserialization, path_, tensor, detail);
  }

  static const char* kind_name(Kind k) {
    static constexpr const char* kNames[] = {"an object", "an array", "a string",
                                             "an integer", "a negative number",
                                             "a fractional or too large number",
                                             "null", "a boolean or binary"};
    return kNames[static_cast<int>(k)];
  }

  void push(Ctx c) {
    stack_.push_back(c);
    MOE_CHECK(stack_.size() <= kMaxJsonDepth, InvalidHeader, path_, "",
              "header JSON is nested deeper than " + std::to_string(kMaxJsonDepth));
  }

  // Every JSON value (scalar, or the start of a container) lands here and is checked against
  // the schema of the context it appears in.
  bool on_value(Kind k, uint64_t u, const std::string* s) {
    if (stack_.empty()) {
      MOE_CHECK(k == Kind::Object, InvalidHeader, path_, "",
                std::string("header is not a JSON object but ") + kind_name(k));
      push(Ctx::Top);
      return true;
    }
    switch (stack_.back()) {
      case Ctx::Top:
        if (key_ == kMetadataKey) {
          if (k == Kind::Null) return true;  // `"__metadata__": null` is an absent map (serde Option)
          if (k != Kind::Object) schema("", "__metadata__ must be an object of strings");
          push(Ctx::Metadata);
        } else {
          if (k != Kind::Object)
            schema(key_, std::string("tensor info must be an object, not ") + kind_name(k));
          cur_ = RawTensor{};
          cur_.name = key_;
          field_keys_.clear();
          push(Ctx::Tensor);
        }
        return true;
      case Ctx::Metadata:
        if (k != Kind::String)
          schema("", "__metadata__ value of '" + key_ + "' must be a string, not " + kind_name(k));
        metadata[key_] = *s;
        return true;
      case Ctx::Tensor:
        return on_field(k, s);
      case Ctx::Dims:
        if (k != Kind::Unsigned)
          schema(cur_.name, std::string("shape dimensions must be non-negative integers, not ") +
                                kind_name(k));
        cur_.dims.push_back(u);
        return true;
      case Ctx::Offsets:
        if (k != Kind::Unsigned)
          schema(cur_.name, std::string("data_offsets must be non-negative integers, not ") +
                                kind_name(k));
        if (cur_.n_offsets == 2) schema(cur_.name, "data_offsets must be [begin, end]");
        cur_.offsets[cur_.n_offsets++] = u;
        return true;
      case Ctx::Skip:
        if (k == Kind::Object || k == Kind::Array) push(Ctx::Skip);
        return true;
    }
    return true;
  }

  // A value of one field of a tensor's info object. Unknown fields are ignored, as serde does.
  bool on_field(Kind k, const std::string* s) {
    if (key_ == "dtype") {
      if (k != Kind::String) schema(cur_.name, std::string("dtype must be a string, not ") + kind_name(k));
      cur_.dtype_name = *s;
      cur_.has_dtype = true;
    } else if (key_ == "shape") {
      if (k != Kind::Array) schema(cur_.name, std::string("shape must be an array, not ") + kind_name(k));
      cur_.has_shape = true;
      push(Ctx::Dims);
    } else if (key_ == "data_offsets") {
      if (k != Kind::Array)
        schema(cur_.name, std::string("data_offsets must be an array, not ") + kind_name(k));
      cur_.has_offsets = true;
      push(Ctx::Offsets);
    } else if (k == Kind::Object || k == Kind::Array) {
      push(Ctx::Skip);
    }
    return true;
  }

  void finish_tensor() {
    static constexpr const char* kFields[] = {"dtype", "shape", "data_offsets"};
    const bool has[] = {cur_.has_dtype, cur_.has_shape, cur_.has_offsets};
    for (int i = 0; i < 3; ++i)
      if (!has[i]) schema(cur_.name, std::string("missing field '") + kFields[i] + "'");
    MOE_CHECK(dtype_from_name(cur_.dtype_name).has_value(), UnknownDType, path_, cur_.name,
              "unknown dtype '" + cur_.dtype_name + "'");
    tensors.push_back(std::move(cur_));
    cur_ = RawTensor{};
  }

  const std::string& path_;
  std::vector<Ctx> stack_;
  std::string key_;
  std::set<std::string> top_keys_, field_keys_;
  bool seen_metadata_ = false;
  RawTensor cur_;
};

// The offset and size rules of formats.md 1.2, in the order tensor.rs applies them: sorted by
// data_offsets, each tensor must start where the previous ended, and hold exactly its bytes.
std::vector<TensorEntry> validate_tensors(std::vector<RawTensor>& raw, uint64_t data_bytes,
                                          const std::string& path) {
  std::vector<size_t> order(raw.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const RawTensor &x = raw[a], &y = raw[b];
    if (x.offsets[0] != y.offsets[0]) return x.offsets[0] < y.offsets[0];
    if (x.offsets[1] != y.offsets[1]) return x.offsets[1] < y.offsets[1];
    return x.name < y.name;
  });

  std::vector<TensorEntry> out(raw.size());
  uint64_t cursor = 0;
  for (size_t i : order) {
    const RawTensor& t = raw[i];
    const uint64_t b = t.offsets[0], e = t.offsets[1];
    const std::string span = "data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "]";
    MOE_CHECK(e >= b, InvalidOffset, path, t.name, span + ": end is before begin");
    MOE_CHECK(b <= cursor, InvalidOffset, path, t.name,
              cursor == 0 && i == order.front()
                  ? span + ": the first tensor of the data buffer must begin at 0"
                  : span + " leave a gap: the previous tensor ends at " + std::to_string(cursor));
    MOE_CHECK(b >= cursor, InvalidOffset, path, t.name,
              span + " overlap the previous tensor, which ends at " + std::to_string(cursor));
    cursor = e;

    const DType dtype = *dtype_from_name(t.dtype_name);
    uint64_t numel = 1, nbits = 0;
    for (uint64_t d : t.dims)
      MOE_CHECK(checked_mul(numel, d, &numel), ValidationOverflow, path, t.name,
                "element count of shape " + dims_str(t.dims) + " overflows 64 bits");
    MOE_CHECK(checked_mul(numel, static_cast<uint64_t>(dtype_bits(dtype)), &nbits),
              ValidationOverflow, path, t.name,
              "bit size of shape " + dims_str(t.dims) + " of " + t.dtype_name + " overflows 64 bits");
    // Stricter than tensor.rs: our shapes and element counts are int64.
    constexpr uint64_t kMaxI64 = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    MOE_CHECK(numel <= kMaxI64 &&
                  std::all_of(t.dims.begin(), t.dims.end(), [](uint64_t d) { return d <= kMaxI64; }),
              ValidationOverflow, path, t.name, "shape " + dims_str(t.dims) + " exceeds int64");
    MOE_CHECK(nbits % 8 == 0, MisalignedSlice, path, t.name,
              std::to_string(numel) + " elements of " + t.dtype_name +
                  " are not a whole number of bytes");
    MOE_CHECK(e - b == nbits / 8, TensorInvalidInfo, path, t.name,
              span + " hold " + std::to_string(e - b) + " bytes but shape " + dims_str(t.dims) +
                  " of " + t.dtype_name + " needs " + std::to_string(nbits / 8));

    TensorEntry& entry = out[i];
    entry.name = t.name;
    entry.dtype = dtype;
    entry.shape.assign(t.dims.begin(), t.dims.end());
    entry.begin = b;
    entry.end = e;
  }
  MOE_CHECK(cursor == data_bytes, MetadataIncompleteBuffer, path, "",
            "tensors cover " + std::to_string(cursor) + " data bytes but the file has " +
                std::to_string(data_bytes) + " after the header");
  return out;
}

}  // namespace

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, uint64_t available,
                                           uint64_t file_size, const std::string& path) {
  MOE_CHECK(file_size >= 8, HeaderTooSmall, path, "",
            "file has " + std::to_string(file_size) + " bytes, fewer than the 8-byte header length");
  MOE_ASSERT(available >= 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];  // little-endian on any host
  MOE_CHECK(n <= kMaxHeaderBytes, HeaderTooLarge, path, "",
            "header length " + std::to_string(n) + " exceeds the limit of " +
                std::to_string(kMaxHeaderBytes) + " bytes");
  MOE_CHECK(8 + n <= file_size, InvalidHeaderLength, path, "",
            "header length " + std::to_string(n) + " runs past the end of the " +
                std::to_string(file_size) + "-byte file");
  MOE_ASSERT(available >= 8 + n);

  const uint8_t* json = bytes + 8;
  const size_t bad = first_invalid_utf8(json, n);
  MOE_CHECK(bad == n, InvalidHeader, path, "",
            std::string(json[bad] ? "header is not valid UTF-8" : "header has a NUL byte") +
                " at file offset " + std::to_string(8 + bad));

  HeaderSax sax(path);
  nlohmann::json::sax_parse(json, json + n, &sax);

  SafetensorsHeader header;
  header.data_offset = 8 + n;
  header.metadata = std::move(sax.metadata);
  header.tensors = validate_tensors(sax.tensors, file_size - header.data_offset, path);
  return header;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  header_ = parse_safetensors_header(file_.data(), file_.size(), file_.size(), path);
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_.emplace(header_.tensors[i].name, i);
}

const TensorEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = index_.find(name);
  MOE_CHECK(it != index_.end(), MissingTensor, path(), name, "no such tensor in the file");
  return header_.tensors[it->second];
}

TensorView SafetensorsFile::view(const std::string& name) const {
  const TensorEntry& e = entry(name);
  TensorView v;
  v.data = file_.data() + header_.data_offset + e.begin;
  v.dtype = e.dtype;
  v.shape = e.shape;
  v.nbytes = e.end - e.begin;
  return v;
}

}  // namespace moe
