#include "shard_fixtures.h"

#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <array>
#include <tuple>

#include "shard/shard_set.h"
#include "support/temp_dir.h"

namespace moe::test {

SyntheticSpec small_spec(Family f, uint64_t seed, int hidden, int inter, int experts) {
  SyntheticSpec s;
  s.family = f;
  s.dtype = DType::BF16;
  s.num_layers = 3;
  s.hidden_size = hidden;
  s.moe_intermediate_size = inter;
  s.dense_intermediate_size = 24;
  s.num_experts = experts;
  s.top_k = 2;
  s.vocab_size = 32;
  s.seed = seed;
  s.threads = 1;
  return s;
}

namespace {

double at(const TensorView& t, int64_t i) { return dtype_traits(t.dtype).decode(t.data, i); }

struct Cache {
  const SyntheticSpec& spec;
  std::map<std::tuple<int, int, int, int>, std::vector<float>> values;
  const std::vector<float>& get(SynthTensor what, int layer, int expert = -1, Proj p = Proj::Gate) {
    auto key = std::make_tuple(static_cast<int>(what), layer, expert, static_cast<int>(p));
    auto it = values.find(key);
    if (it == values.end())
      it = values.emplace(key, synthetic_values(spec, what, layer, expert, p)).first;
    return it->second;
  }
};

}  // namespace

int check_shard_set_against_spec(const std::string& dir, const SyntheticSpec& spec,
                                 const PlanOptions& o) {
  const ShardSet set = ShardSet::open(dir, /*verify_checksums=*/true);
  const ModelProfile& prof = set.profile();
  const ShardGeometry& g = set.geometry();
  const int E = prof.num_experts, R = std::max(o.redundant_experts, 0), Ep = E + R;
  const int64_t H = prof.hidden_size, I = prof.moe_intermediate_size;
  // The expected geometry, computed here from the rules of docs/shard-format.md.
  const int64_t Iu = (I + o.tp - 1) / o.tp;
  const int64_t Ir = o.pad_intermediate_to ? (Iu + o.pad_intermediate_to - 1) / o.pad_intermediate_to * o.pad_intermediate_to : Iu;
  const int64_t Hp = o.pad_hidden_to ? (H + o.pad_hidden_to - 1) / o.pad_hidden_to * o.pad_hidden_to : H;
  REQUIRE(g.tp == o.tp);
  REQUIRE(g.ep == o.ep);
  REQUIRE(g.num_physical_experts == Ep);
  REQUIRE(g.intermediate_per_rank_padded == Ir);
  REQUIRE(g.hidden_size_padded == Hp);
  REQUIRE(g.w13_up_first == (o.w13_order == W13Order::UpGate));
  const bool up_first = o.w13_order == W13Order::UpGate;

  Cache cache{spec, {}};
  int reassembled = 0;
  for (int layer : prof.moe_layers) {
    // Reassembled experts: [E][proj] -> [I, H] / [H, I], NaN where no rank wrote.
    std::vector<std::array<std::vector<double>, 3>> full(E);
    for (auto& f : full)
      for (int k = 0; k < 3; ++k) f[k].assign(I * H, std::nan(""));
    // Replica bytes: (tp_rank, logical) -> w13|w2 bytes of the first replica seen.
    std::map<std::pair<int, int>, std::string> replica;
    std::vector<int> holders(Ep, 0);
    for (const RankInfo& r : set.ranks()) {
      const RankLayer& rl = set.layer(r.rank, layer);
      // Placement, computed independently.
      std::vector<int32_t> want_local;
      if (o.placement == Placement::RoundRobin) {
        for (int p = r.ep_rank; p < Ep; p += o.ep) want_local.push_back(p);
      } else {
        const int q = Ep / o.ep, rem = Ep % o.ep;
        const int b = r.ep_rank * q + std::min(r.ep_rank, rem);
        for (int p = b; p < b + q + (r.ep_rank < rem); ++p) want_local.push_back(p);
      }
      CHECK(rl.local_to_physical == want_local);
      for (int p = 0; p < Ep; ++p) {
        int want = p % E;
        if (o.expert_map) {
          auto pl = o.expert_map->per_layer.find(layer);
          if (pl != o.expert_map->per_layer.end()) want = pl->second.at(p);
          else if (!o.expert_map->all.empty()) want = o.expert_map->all.at(p);
        }
        CHECK(rl.physical_to_logical[p] == want);
        auto it = std::find(want_local.begin(), want_local.end(), p);
        CHECK(rl.expert_map[p] == (it == want_local.end() ? -1 : int(it - want_local.begin())));
      }
      const int64_t begin = std::min<int64_t>(r.tp_rank * Iu, I);
      const int64_t count = std::min<int64_t>(Iu, I - begin);
      const int64_t eb = dtype_bits(rl.w13.dtype) / 8;
      for (size_t j = 0; j < want_local.size(); ++j) {
        const int p = want_local[j], e = rl.physical_to_logical[p];
        if (r.tp_rank == 0) ++holders[p];
        const int64_t w13_base = j * 2 * Ir * Hp, w2_base = j * Hp * Ir;
        for (int half = 0; half < 2; ++half) {
          const Proj proj = (half == 0) != up_first ? Proj::Gate : Proj::Up;
          const int k = proj == Proj::Gate ? 0 : 1;
          for (int64_t i = 0; i < Ir; ++i)
            for (int64_t h = 0; h < Hp; ++h) {
              const double v = at(rl.w13, w13_base + (half * Ir + i) * Hp + h);
              if (i < count && h < H) full[e][k][(begin + i) * H + h] = v;
              else if (v != 0.0) FAIL_CHECK("w13 pad not zero at rank " << r.rank << " expert " << j);
            }
        }
        for (int64_t h = 0; h < Hp; ++h)
          for (int64_t i = 0; i < Ir; ++i) {
            const double v = at(rl.w2, w2_base + h * Ir + i);
            if (h < H && i < count) full[e][2][h * I + begin + i] = v;
            else if (v != 0.0) FAIL_CHECK("w2 pad not zero at rank " << r.rank << " expert " << j);
          }
        std::string bytes(reinterpret_cast<const char*>(rl.w13.data + w13_base * eb), 2 * Ir * Hp * eb);
        bytes.append(reinterpret_cast<const char*>(rl.w2.data + w2_base * eb), Hp * Ir * eb);
        auto [it, fresh] = replica.emplace(std::make_pair(r.tp_rank, e), bytes);
        if (!fresh) CHECK(it->second == bytes);  // replicas byte-identical
        if (rl.w13_bias.data) {
          const auto& gb = cache.get(SynthTensor::ExpertBias, layer, e, Proj::Gate);
          const auto& ub = cache.get(SynthTensor::ExpertBias, layer, e, Proj::Up);
          const auto& db = cache.get(SynthTensor::ExpertBias, layer, e, Proj::Down);
          for (int half = 0; half < 2; ++half) {
            const auto& src = (half == 0) != up_first ? gb : ub;
            for (int64_t i = 0; i < Ir; ++i) {
              const double v = at(rl.w13_bias, j * 2 * Ir + half * Ir + i);
              CHECK(v == (i < count ? src[begin + i] : 0.0));
            }
          }
          for (int64_t h = 0; h < Hp; ++h) {
            const double v = at(rl.w2_bias, j * Hp + h);
            CHECK(v == (h < H && r.tp_rank == 0 ? db[h] : 0.0));
          }
        }
      }
      const auto& router = cache.get(SynthTensor::Router, layer);
      for (int64_t i = 0; i < E * H; ++i) REQUIRE(at(rl.router_weight, i) == router[i]);
      if (prof.routing.has_router_bias) {
        REQUIRE(rl.router_bias.data);
        const auto& b = cache.get(SynthTensor::RouterBias, layer);
        for (int i = 0; i < E; ++i) CHECK(at(rl.router_bias, i) == b[i]);
      }
      if (prof.routing.has_correction_bias) {
        REQUIRE(rl.correction_bias.data);
        const auto& b = cache.get(SynthTensor::CorrectionBias, layer);
        for (int i = 0; i < E; ++i) CHECK(at(rl.correction_bias, i) == b[i]);
      }
      if (prof.shared_intermediate_size > 0) {
        REQUIRE(rl.shared_w13.data);
        const int64_t S = prof.shared_intermediate_size, Su = (S + o.tp - 1) / o.tp;
        const int64_t Sr = g.shared_per_rank_padded;
        const int64_t sb = std::min<int64_t>(r.tp_rank * Su, S), sc = std::min<int64_t>(Su, S - sb);
        for (int half = 0; half < 2; ++half) {
          const Proj proj = (half == 0) != up_first ? Proj::Gate : Proj::Up;
          const auto& src = cache.get(SynthTensor::SharedWeight, layer, -1, proj);
          for (int64_t i = 0; i < Sr; ++i)
            for (int64_t h = 0; h < Hp; ++h) {
              const double v = at(rl.shared_w13, (half * Sr + i) * Hp + h);
              if (i < sc && h < H) REQUIRE(v == src[(sb + i) * H + h]);
              else REQUIRE(v == 0.0);
            }
        }
        const auto& down = cache.get(SynthTensor::SharedWeight, layer, -1, Proj::Down);
        for (int64_t h = 0; h < Hp; ++h)
          for (int64_t i = 0; i < Sr; ++i) {
            const double v = at(rl.shared_w2, h * Sr + i);
            if (h < H && i < sc) REQUIRE(v == down[h * S + sb + i]);
            else REQUIRE(v == 0.0);
          }
      }
      if (prof.has_shared_expert_gate) {
        const auto& sg = cache.get(SynthTensor::SharedExpertGate, layer);
        for (int64_t h = 0; h < H; ++h) REQUIRE(at(rl.shared_expert_gate, h) == sg[h]);
      }
    }
    for (int h : holders) CHECK(h == 1);
    // Every logical expert, reassembled from all TP slices, equals the source bit for bit.
    for (int e = 0; e < E; ++e) {
      const std::vector<float>* src[3] = {&cache.get(SynthTensor::ExpertWeight, layer, e, Proj::Gate),
                                          &cache.get(SynthTensor::ExpertWeight, layer, e, Proj::Up),
                                          &cache.get(SynthTensor::ExpertWeight, layer, e, Proj::Down)};
      int64_t mismatches = 0;
      for (int k = 0; k < 3; ++k)
        for (int64_t i = 0; i < I * H; ++i) {
          // Proj::Down is [H, I] in both.
          if (!(full[e][k][i] == static_cast<double>((*src[k])[i]))) ++mismatches;
        }
      CHECK(mismatches == 0);
      ++reassembled;
    }
  }
  return reassembled;
}

std::vector<std::pair<std::string, std::string>> read_all_files(const std::string& dir) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file())
      out.emplace_back(std::filesystem::relative(e.path(), dir).string(), read_text(e.path().string()));
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace moe::test
