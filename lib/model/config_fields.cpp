#include "model/config_fields.h"

#include <limits>

#include "core/error.h"

namespace moe {

namespace {
const nlohmann::json* present(const nlohmann::json& cfg, const char* field) {
  if (!cfg.is_object()) return nullptr;
  auto it = cfg.find(field);
  if (it == cfg.end() || it->is_null()) return nullptr;
  return &*it;
}

[[noreturn]] void bad_type(const std::string& path, const char* field, const char* want,
                           const nlohmann::json& v) {
  fail(ErrorCode::InvalidConfig, path, "",
       std::string("field '") + field + "' must be " + want + ", got " + v.dump());
}
}  // namespace

std::optional<int64_t> config_int(const nlohmann::json& cfg, const char* field,
                                  const std::string& path) {
  const auto* v = present(cfg, field);
  if (!v) return std::nullopt;
  if (v->is_number_integer()) return v->get<int64_t>();
  // Some exporters write integral floats (e.g. 8.0); anything else is a type error.
  if (v->is_number_float()) {
    double d = v->get<double>();
    if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
  }
  bad_type(path, field, "an integer", *v);
}

std::optional<double> config_number(const nlohmann::json& cfg, const char* field,
                                    const std::string& path) {
  const auto* v = present(cfg, field);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad_type(path, field, "a number", *v);
  return v->get<double>();
}

std::optional<bool> config_bool(const nlohmann::json& cfg, const char* field,
                                const std::string& path) {
  const auto* v = present(cfg, field);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad_type(path, field, "true or false", *v);
  return v->get<bool>();
}

std::optional<std::string> config_string(const nlohmann::json& cfg, const char* field,
                                         const std::string& path) {
  const auto* v = present(cfg, field);
  if (!v) return std::nullopt;
  if (!v->is_string()) bad_type(path, field, "a string", *v);
  return v->get<std::string>();
}

std::optional<std::vector<int>> config_int_list(const nlohmann::json& cfg, const char* field,
                                                const std::string& path) {
  const auto* v = present(cfg, field);
  if (!v) return std::nullopt;
  if (!v->is_array()) bad_type(path, field, "a list of integers", *v);
  std::vector<int> out;
  for (const auto& e : *v) {
    if (!e.is_number_integer() || e.get<int64_t>() < 0 ||
        e.get<int64_t>() > std::numeric_limits<int32_t>::max())
      bad_type(path, field, "a list of non-negative integers", *v);
    out.push_back(e.get<int>());
  }
  return out;
}

std::string spellings_str(const Spellings& names) {
  std::string s = names.names[0] ? names.names[0] : "";
  std::string alt;
  for (size_t i = 1; i < names.names.size() && names.names[i]; ++i)
    alt += (alt.empty() ? "" : ", ") + std::string(names.names[i]);
  return alt.empty() ? s : s + " (or " + alt + ")";
}

std::optional<int64_t> config_int_any(const nlohmann::json& cfg, const Spellings& names,
                                      const std::string& path) {
  for (const char* n : names.names) {
    if (!n) break;
    if (auto v = config_int(cfg, n, path)) return v;
  }
  return std::nullopt;
}

int config_required_int(const nlohmann::json& cfg, const Spellings& names, int min_value,
                        const std::string& path) {
  auto v = config_int_any(cfg, names, path);
  MOE_CHECK(v.has_value(), InvalidConfig, path, "", "missing field " + spellings_str(names));
  MOE_CHECK(*v >= min_value && *v <= std::numeric_limits<int32_t>::max(), InvalidConfig, path, "",
            "field " + spellings_str(names) + " = " + std::to_string(*v) + " is out of range (>= " +
                std::to_string(min_value) + ")");
  return static_cast<int>(*v);
}

}  // namespace moe
