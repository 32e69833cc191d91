#include "model/quant_config.h"

#include "core/error.h"

namespace moe {

namespace {

std::string str_or(const nlohmann::json& j, const char* key, const std::string& dflt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string group_str(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return "";
  int64_t g = it->get<int64_t>();
  return g <= 0 ? " per-channel" : " g" + std::to_string(g);
}

bool flag(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

// ---- readable names, one per method (formats.md section given in each) ---------------------

// 2.1: format + the first config group's weight scheme, e.g. "pack-quantized int4 group g128".
std::string name_compressed_tensors(const nlohmann::json& qc) {
  std::string s = str_or(qc, "format", "");
  auto groups = qc.find("config_groups");
  if (groups != qc.end() && groups->is_object() && !groups->empty()) {
    const auto& g = groups->begin().value();
    auto w = g.find("weights");
    if (w != g.end() && w->is_object()) {
      if (s.empty()) s = str_or(g, "format", "");
      s += " " + str_or(*w, "type", "int") + str_or(*w, "num_bits", "?");
      std::string strategy = str_or(*w, "strategy", "");
      if (!strategy.empty()) s += " " + strategy;
      if (strategy == "group" || strategy == "tensor_group") s += group_str(*w, "group_size");
      auto block = w->find("block_structure");
      if (block != w->end() && block->is_array() && block->size() == 2)
        s += " " + block->at(0).dump() + "x" + block->at(1).dump();
      if (w->contains("symmetric") && !flag(*w, "symmetric")) s += " asym";
      auto act = w->find("actorder");
      if (act != w->end() && act->is_string()) s += " actorder=" + act->get<std::string>();
    }
    if (groups->size() > 1) s += " (+" + std::to_string(groups->size() - 1) + " more groups)";
  }
  return s;
}

// 6: DeepSeek block FP8.
std::string name_fp8(const nlohmann::json& qc) {
  std::string s = str_or(qc, "fmt", "e4m3");
  auto block = qc.find("weight_block_size");
  if (block != qc.end() && block->is_array() && block->size() == 2)
    s += " block " + block->at(0).dump() + "x" + block->at(1).dump();
  else
    s += " per-tensor";
  return s + ", activations " + str_or(qc, "activation_scheme", "dynamic");
}

// 5.1: quant_algo at the top (config.json) or under "quantization" (hf_quant_config.json).
std::string name_modelopt(const nlohmann::json& qc) {
  std::string algo = str_or(qc, "quant_algo", "");
  auto q = qc.find("quantization");
  if (algo.empty() && q != qc.end() && q->is_object()) algo = str_or(*q, "quant_algo", "");
  return algo.empty() ? "unknown quant_algo" : algo;
}

// 7: gpt-oss MXFP4.
std::string name_mxfp4(const nlohmann::json&) { return "e2m1, e8m0 scale per 32"; }

// 4: bitsandbytes 4-bit (nf4 / fp4, optional double quant) or LLM.int8.
std::string name_bnb(const nlohmann::json& qc) {
  if (flag(qc, "load_in_8bit")) return "int8";
  std::string s = str_or(qc, "bnb_4bit_quant_type", "fp4");
  if (flag(qc, "bnb_4bit_use_double_quant")) s += " double-quant";
  return s;
}

// 3.1
std::string name_gptq(const nlohmann::json& qc) {
  std::string s = "int" + str_or(qc, "bits", "4") + group_str(qc, "group_size");
  if (flag(qc, "desc_act")) s += " act-order";
  if (qc.contains("sym") && !flag(qc, "sym")) s += " asym";
  std::string fmt = str_or(qc, "checkpoint_format", "");
  if (!fmt.empty() && fmt != "gptq") s += " " + fmt;
  return s;
}

// 3.2
std::string name_awq(const nlohmann::json& qc) {
  return "int" + str_or(qc, "bits", "4") + group_str(qc, "group_size") + " " +
         str_or(qc, "version", "gemm");
}

struct QuantRow {
  QuantMethod method;
  const char* quant_method;  // the config string
  std::string (*describe)(const nlohmann::json& qc);
};

std::string name_none(const nlohmann::json&) { return ""; }

const QuantRow kQuantRows[] = {
    {QuantMethod::None, "none", name_none},
    {QuantMethod::CompressedTensors, "compressed-tensors", name_compressed_tensors},
    {QuantMethod::Fp8Block, "fp8", name_fp8},
    {QuantMethod::ModelOpt, "modelopt", name_modelopt},
    {QuantMethod::Mxfp4, "mxfp4", name_mxfp4},
    {QuantMethod::BitsAndBytes, "bitsandbytes", name_bnb},
    {QuantMethod::Gptq, "gptq", name_gptq},
    {QuantMethod::Awq, "awq", name_awq},
};
static_assert(sizeof(kQuantRows) / sizeof(kQuantRows[0]) == static_cast<size_t>(QuantMethod::kCount),
              "one row per QuantMethod");

}  // namespace

const char* quant_method_name(QuantMethod m) {
  auto i = static_cast<size_t>(m);
  MOE_ASSERT(i < static_cast<size_t>(QuantMethod::kCount) && kQuantRows[i].method == m);
  return kQuantRows[i].quant_method;
}

std::optional<QuantMethod> quant_method_from_name(std::string_view name) {
  for (const auto& row : kQuantRows)
    if (name == row.quant_method) return row.method;
  return std::nullopt;
}

QuantInfo quant_info_from_config(const nlohmann::json& qc, const std::string& path) {
  QuantInfo info;
  if (qc.is_null()) {
    info.name = "none";
    return info;
  }
  MOE_CHECK(qc.is_object(), InvalidConfig, path, "",
            "field 'quantization_config' must be an object, got " + qc.dump());
  auto it = qc.find("quant_method");
  MOE_CHECK(it != qc.end() && it->is_string(), InvalidConfig, path, "",
            "field 'quantization_config.quant_method' is missing or not a string");
  std::string method = it->get<std::string>();
  auto m = quant_method_from_name(method);
  MOE_CHECK(m && *m != QuantMethod::None, UnsupportedQuantization, path, "",
            "unsupported quantization " + method);
  const auto& row = kQuantRows[static_cast<size_t>(*m)];
  info.method = *m;
  info.name = std::string(row.quant_method) + " " + row.describe(qc);
  info.raw = qc;
  return info;
}

}  // namespace moe
