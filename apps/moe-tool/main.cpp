// moe-tool: a thin shell over lib/. Parses, dispatches to the chosen subcommand, and turns any
// moe::Error into one line on stderr and exit code 2 (docs/cli.md lists the exit codes).
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "command.h"
#include "core/error.h"

namespace moe::cli {

std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}

void print_json(const nlohmann::json& j) { std::cout << j.dump(2) << std::endl; }

}  // namespace moe::cli

int main(int argc, char** argv) {
  using namespace moe::cli;
  CLI::App app{"moe-tool: read, shard, validate and run Mixture-of-Experts checkpoints"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "moe-tool 0.1.0");

  auto commands = registry();
  std::sort(commands.begin(), commands.end(),
            [](const Command& a, const Command& b) { return a.order < b.order; });
  std::vector<std::pair<CLI::App*, std::function<int()>>> runners;
  for (auto& c : commands) runners.push_back(c.setup(app));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
  } catch (const moe::Error& e) {
    std::fprintf(stderr, "moe-tool: error: %s\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "moe-tool: error: out of memory\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe-tool: error: %s\n", e.what());
    return 2;
  }
  return 2;
}
