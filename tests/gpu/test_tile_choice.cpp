// The tile choice (kernels::choose_tiles) on the host, no GPU needed: for a grid of layer sizes
// and token counts, every choice names rows that exist in the table, share the alignment block,
// run on the device class asked for, and split down's K sensibly. A row renamed or dropped from
// the table, or a boundary that hands a block height to a row of another height, fails here in
// CI instead of as a launch error on a GPU machine.
#include <catch2/catch.hpp>

#include <string>

#include "moe_kernels.h"

using namespace moe;

TEST_CASE("tile choice names existing rows of one block height for every layer size",
          "[tiles]") {
  const int slot_counts[] = {1, 2, 7, 64, 300, 2048, 4096, 8192, 32768, 131072};
  const int expert_counts[] = {1, 2, 8, 16, 17, 64, 128, 256};
  const int inter_sizes[] = {48, 256, 504, 768, 1408, 2880, 14336};
  const int hidden_sizes[] = {104, 2048, 2880, 4096, 7168};
  int choices = 0;
  for (bool wgmma : {false, true})
    for (double hbm : {0.0, 3.35, 4.8})  // unknown, H100-class, H200-class memory
      for (int slots : slot_counts)
        for (int experts : expert_counts)
          for (int inter : inter_sizes)
            for (int hidden : hidden_sizes) {
              const kernels::TileChoice c =
                  kernels::choose_tiles(slots, experts, inter, hidden, 132, wgmma, hbm);
              INFO("wgmma " << wgmma << ", HBM " << hbm << " TB/s, slots " << slots
                            << ", experts " << experts << ", I " << inter << ", H " << hidden);
              REQUIRE(c.gate_up_cfg >= 0);
              REQUIRE(c.gate_up_cfg < kernels::gate_up_config_count());
              REQUIRE(c.down_cfg >= 0);
              REQUIRE(c.down_cfg < kernels::down_config_count());
              const kernels::GemmConfigInfo g = kernels::gate_up_config(c.gate_up_cfg);
              const kernels::GemmConfigInfo d = kernels::down_config(c.down_cfg);
              INFO(g.name << " + " << d.name << " split " << c.down_split_k);
              CHECK(g.block_m == c.block_m);
              CHECK(d.block_m == c.block_m);
              if (!wgmma) {  // a device without the sm_90a image gets mma.sync rows only
                CHECK_FALSE(g.wgmma);
                CHECK_FALSE(d.wgmma);
              }
              CHECK(c.down_split_k >= 1);
              CHECK(c.down_split_k <= 16);
              CHECK(c.down_split_k <= (inter + 63) / 64);  // every split has K to do
              ++choices;
            }
  CHECK(choices == 2 * 3 * 10 * 8 * 7 * 5);
}

TEST_CASE("tile table rows have distinct names and positive sizes", "[tiles]") {
  for (int table = 0; table < 2; ++table) {
    const int n = table == 0 ? kernels::gate_up_config_count() : kernels::down_config_count();
    REQUIRE(n > 0);
    for (int i = 0; i < n; ++i) {
      const auto a = table == 0 ? kernels::gate_up_config(i) : kernels::down_config(i);
      INFO((table == 0 ? "gate-up row " : "down row ") << a.name);
      CHECK(a.block_m > 0);
      CHECK(a.block_n > 0);
      CHECK((table == 0 ? kernels::gate_up_config_named(a.name) : kernels::down_config_named(a.name)) == i);
      for (int j = i + 1; j < n; ++j) {
        const auto b = table == 0 ? kernels::gate_up_config(j) : kernels::down_config(j);
        CHECK(std::string(a.name) != b.name);
      }
    }
  }
  CHECK(kernels::gate_up_config_named("tma_m192n96x") == -1);
  CHECK(kernels::down_config_named("") == -1);
}
