// What a running job's trainer (rank 0) reports to the coordinator (docs/api.md, "Reports"):
// metric batches, results with the compute ledger, checkpoints, and the phase it is in. All are
// requests, so unknown fields are refused. The trainer writes the same records to its report.jsonl.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocol/enums.h"
#include "protocol/json.h"

namespace vitscale::protocol {

inline constexpr size_t kMaxMetricPoints = 100000;  // per batch
inline constexpr size_t kMaxResults = 10000;        // per report
inline constexpr int64_t kMaxStep = int64_t{1} << 50;

struct MetricPoint {
  int64_t step = 0;
  std::string name;  // "loss", "fine_tune/digits/lr=0.01/loss", ...
  double value = 0;
  std::optional<double> time;  // seconds since the Unix epoch; the coordinator's clock if absent

  static Expected<MetricPoint> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// POST /api/v1/jobs/{id}/attempts/{n}/metrics
struct MetricBatch {
  std::vector<MetricPoint> points;

  static Expected<MetricBatch> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

struct ResultEntry {
  Evaluation evaluation = Evaluation::kPretrain;
  std::string dataset;
  std::optional<int> shots;  // few_shot results need it; the others must leave it out
  std::optional<int> seed;   // the k-shot draw; absent for a single run
  std::string metric;        // "accuracy", or e.g. "accuracy@lr=0.01"
  double value = 0;

  static Expected<ResultEntry> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// What one attempt cost: analytic FLOPs and measured seconds.
struct Ledger {
  double train_flops = 0;  // 6 x forward MACs x images seen
  double eval_flops = 0;
  int64_t images_seen = 0;
  std::string device_kind;  // "cpu", or the GPU's name
  double device_seconds = 0;
  double wall_seconds = 0;

  static Expected<Ledger> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// POST /api/v1/jobs/{id}/attempts/{n}/results: stored together in one transaction.
struct ResultsReport {
  std::vector<ResultEntry> results;
  std::optional<Ledger> ledger;

  static Expected<ResultsReport> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// POST /api/v1/jobs/{id}/attempts/{n}/checkpoints: a checkpoint was written.
struct CheckpointReport {
  int64_t step = 0;
  std::string path;    // absolute; the coordinator accepts only paths in the job's run folder
  std::string sha256;  // of the checkpoint's manifest

  static Expected<CheckpointReport> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// POST /api/v1/jobs/{id}/attempts/{n}/phase: the job entered a phase, or a new part of one
// ("few-shot 2/6"). The coordinator shows the newest with the job while the attempt runs.
inline constexpr int64_t kMaxPhaseParts = 100000;
struct PhaseReport {
  JobPhase phase = JobPhase::kPretraining;
  int64_t index = 0;   // the part under way, 1..count; 0 for a phase without parts
  int64_t count = 0;   // how many parts the phase has; 0 without parts
  std::string detail;  // e.g. "cifar10 lr=0.01"; may be empty

  // A request (unknown fields refused); FromReply reads the same object in a reply (job views),
  // where unknown fields are ignored.
  static Expected<PhaseReport> FromJson(const Json& value, const std::string& path);
  static Expected<PhaseReport> FromReply(const Json& value, const std::string& path);
  Json ToJson() const;
  // "few-shot 2/6 (digits seed 1)", as the CLI shows it.
  std::string ToString() const;
};

// The answer to a metric batch or a results report.
struct StoredReply {
  int64_t stored = 0;

  static Expected<StoredReply> FromJson(const Json& value, const std::string& path);
  Json ToJson() const { return Json{{"stored", stored}}; }
};

}  // namespace vitscale::protocol
