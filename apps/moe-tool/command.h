// Subcommand registry: each cmd_<name>.cpp registers itself with a static Registrar, so adding a
// subcommand is adding one file. A command's run() returns the process exit code:
//   0 success / all checks passed, 1 a check failed (invalid checkpoint, numeric mismatch),
//   2 unusable input or bad arguments (moe::Error is caught in main and mapped to 2).
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace moe::cli {

struct Command {
  int order;  // position in --help
  // Adds the subcommand to `app`; returns it and the function that runs it after parsing.
  std::function<std::pair<CLI::App*, std::function<int()>>(CLI::App& app)> setup;
};

std::vector<Command>& registry();

struct Registrar {
  Registrar(int order,
            std::function<std::pair<CLI::App*, std::function<int()>>(CLI::App&)> setup) {
    registry().push_back({order, std::move(setup)});
  }
};

// Prints JSON to stdout (pretty, one document).
void print_json(const nlohmann::json& j);

}  // namespace moe::cli
