// The throughput table: images per second per device for each (model, accelerator kind,
// precision, global batch), from what finished jobs measured (the compute ledger and their
// attempts) and from imported benchmark runs; and the lookup the simulator prices a job with,
// which falls back to an estimate (marked as one) where nothing was measured. docs/planning.md
// explains the model: seconds = overhead + work / (images/s per device x devices).
//
// Plain values and functions: safe from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "storage/records.h"

namespace vitscale::planning {

// The precision a run on this device kind uses by default: the trainer's `auto` is float32 on
// a CPU and bf16 autocast on a GPU (docs/gpu.md). The ledger does not record it otherwise.
std::string DefaultPrecision(std::string_view device_kind);
// Do a measured device kind ("NVIDIA H200") and a cluster's kind ("H200") name the same
// accelerator? Case-insensitive; a leading "NVIDIA " is ignored; "H100" matches "H100 80GB HBM3".
bool SameKind(std::string_view a, std::string_view b);

struct ThroughputEntry {
  std::string model;
  std::string device_kind;
  std::string precision;
  int64_t batch_size = 0;
  double images_per_second = 0;  // per device, once the job runs (the marginal rate)
  double flops_per_image = 0;    // training FLOPs per image (6 x MACs)
  double overhead_seconds = 0;   // per job: launch, data loading, the transfer evaluations
  std::string source;            // "ledger" or "benchmark: <what the import said>"
  int jobs = 0;                  // ledger: the finished jobs it was measured from
  double FlopsPerSecond() const { return images_per_second * flops_per_image; }
};

// Ledger samples grouped by (model, kind, precision, batch): a least-squares line through
// (images per device, seconds) gives the overhead (intercept) and the rate (1 / slope) when the
// group has jobs of at least two sizes and the line is sensible (slope > 0, intercept >= 0);
// otherwise overhead 0 and rate = images / seconds over the group. Imports are added as they
// are; a ledger entry hides an import of the same key (what ran here beats a benchmark).
std::vector<ThroughputEntry> BuildThroughputTable(
    const std::vector<storage::ThroughputSample>& samples,
    const std::vector<storage::ThroughputImport>& imports);

// What one job needs priced.
struct RateQuery {
  std::string model;
  std::string family;
  int64_t batch_size = 0;
  double flops_per_image = 0;  // of this job (its resolution and classes)
};

struct Rate {
  double images_per_second = 0;  // per device
  double overhead_seconds = 0;
  bool estimate = false;
  std::string basis;  // "measured", or how the estimate was made
};

// Prices jobs on device kinds. Without any entry for a kind, a nominal peak (from the cluster
// file, or the table of known kinds in throughput.cc) at kAssumedUtilisation is the estimate.
class ThroughputTable {
 public:
  static constexpr double kAssumedUtilisation = 0.4;

  explicit ThroughputTable(std::vector<ThroughputEntry> entries) : entries_(std::move(entries)) {}
  const std::vector<ThroughputEntry>& entries() const { return entries_; }

  // The nominal peak training FLOP/s per device of a kind, overriding the built-in ones.
  void SetPeakFlops(const std::string& kind, double flops_per_second);

  // Measured for this model, kind and batch; else the same model at another batch (an
  // estimate); else the FLOP/s of the related model measured on the kind (same family first,
  // then nearest in FLOPs per image) spent on this model's FLOPs; else the nominal peak. No
  // peak known for the kind either: kNotFound saying what to import or declare.
  Expected<Rate> Lookup(const RateQuery& query, const std::string& kind) const;

 private:
  std::vector<ThroughputEntry> entries_;
  std::map<std::string, double> peak_flops_;  // lower-case kind -> FLOP/s
};

nlohmann::json ToJson(const ThroughputEntry& entry);
// Rows of a benchmark import file (docs/planning.md): {"rows": [{"model", "device_kind",
// "precision", "batch_size", "images_per_second", "flops_per_image", "overhead_seconds"}]}, or
// a bare array of such rows; or vitscale-gpu-bench's output, one JSON line per measurement
// (its FLOPs per image from the registry at its resolution and 1000 classes). `source` names
// the file in errors and in each row. With
// `ignore_unknown`, other fields are skipped, so `vitscale throughput --json` output reads too.
Expected<std::vector<storage::ThroughputImport>> ParseThroughputImport(std::string_view text,
                                                                       const std::string& source,
                                                                       bool ignore_unknown = false);

}  // namespace vitscale::planning
