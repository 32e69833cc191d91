// Default pass/fail tolerances of `run`, per backend and weight encoding, as one table; the
// reasoning behind every row is in docs/numerics.md. --rtol / --atol override them.
#pragma once
#include <optional>
#include <string>

#include "reference/metrics.h"

namespace moe {

struct Tolerance {
  double rel_l2 = 0;       // bound on ||out - ref|| / ||ref||
  double max_abs_rel = 0;  // bound on max |out - ref|, as a multiple of max |ref|
  std::string basis;       // which table row ("cuda/BF16"), or "--rtol/--atol"
};

// `backend` is MoeBackend::name() ("cpu", "cuda"); `encoding` is the dense dtype name ("BF16",
// "F16", "F32") or the canonical encoding ("fp8", "int", "fp4", "nf4"). Unknown pairs get the
// loosest row of that backend.
Tolerance default_tolerance(const std::string& backend, const std::string& encoding);

struct Verdict {
  double rtol = 0, atol = 0;  // the bounds applied (atol absolute)
  bool pass = false;
};
// Pass iff the output is finite, rel_l2 <= rtol and max_abs <= atol, where rtol defaults to the
// table's rel_l2 and atol to max_abs_rel * max |ref|.
Verdict judge(const ErrorMetrics& m, const Tolerance& table, std::optional<double> rtol,
              std::optional<double> atol);

}  // namespace moe
