// What a training job reports, and where it goes. The trainer's rank 0 alone writes reports;
// other ranks hold no sink. A ReportSink is called from the training thread only.
//
// Records:
//   MetricPoint    one training-curve value (loss, lr, grad_norm, images_per_sec, images_seen,
//                  train_flops, test accuracy...) at a step; sent in batches.
//   ResultRecord   one final figure: pretraining test accuracy, each few-shot (dataset, shots,
//                  seed) accuracy and its mean over seeds, each fine-tune accuracy.
//   ComputeLedger  the job's cost: analytic FLOPs and measured seconds.
//   Phase          what the job is doing now: pretraining, few-shot i/n, fine-tune i/n,
//                  inspection i/n; for progress displays (a job at 100% of its pretraining
//                  may still have minutes of evaluations ahead).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "protocol/reports.h"

namespace vitscale::trainer {

struct MetricPoint {
  int64_t step = 0;
  std::string name;
  double value = 0.0;
};

struct ResultRecord {
  std::string evaluation;  // "pretrain", "few_shot", "fine_tune"
  std::string dataset;
  int64_t shots = 0;       // few-shot only; 0 otherwise
  int64_t seed = -1;       // the k-shot draw; -1 for a mean over draws or a single run
  std::string metric;      // "accuracy", or e.g. "accuracy@lr=0.01"
  double value = 0.0;
};

// The phase names a job reports, in the order a job goes through them.
inline constexpr char kPhasePretraining[] = "pretraining";
inline constexpr char kPhaseFewShot[] = "few-shot";
inline constexpr char kPhaseFineTune[] = "fine-tune";
inline constexpr char kPhaseInspection[] = "inspection";

struct Phase {
  std::string name;    // one of the kPhase* names
  int64_t index = 0;   // the part under way, from 1; 0 for a phase without parts
  int64_t count = 0;   // how many parts the phase has; 0 without parts
  std::string detail;  // e.g. "cifar10 lr=0.01"; may be empty

  // "few-shot 2/6 (digits seed 1)"
  std::string ToString() const;
};

struct ComputeLedger {
  double train_flops = 0.0;  // 6 x forward MACs x images seen (PAPER.md)
  double eval_flops = 0.0;   // 2 x forward MACs per evaluated image (+ 6x for fine-tune steps)
  int64_t images_seen = 0;   // pretraining images, over all ranks
  std::string device_kind;   // "cpu", or the GPU's name
  double device_seconds = 0.0;  // wall seconds x ranks (each rank holds one device or CPU slot)
  double wall_seconds = 0.0;    // this attempt's wall time, resumes not included
};

// The records as the protocol sends them (protocol/reports.h), for the coordinator and the
// report file alike. A few-shot mean over seeds (seed -1) is the trainer's own summary, not a
// result the coordinator stores (it averages the seeds itself): kNotFound.
Expected<protocol::ResultEntry> ToProtocol(const ResultRecord& result);
protocol::Ledger ToProtocol(const ComputeLedger& ledger);
// kInvalidArgument for a phase name that is none of the kPhase* names.
Expected<protocol::PhaseReport> ToProtocol(const Phase& phase);

class ReportSink {
 public:
  virtual ~ReportSink() = default;
  virtual Status Metrics(const std::vector<MetricPoint>& points) = 0;
  // What a finished job reports once, in one call so that a sink can store it together: its
  // results and its cost.
  virtual Status Final(const std::vector<ResultRecord>& results, const ComputeLedger& ledger) = 0;
  // A checkpoint was written (its directory, and the SHA-256 of its manifest). Files and stdout
  // have no use for it; the coordinator records it.
  virtual Status Checkpoint(int64_t step, const std::string& path, const std::string& sha256) {
    (void)step, (void)path, (void)sha256;
    return Status::Ok();
  }
  // The job entered a phase or a new part of one. Sinks without a use for it ignore it.
  virtual Status EnterPhase(const Phase& phase) {
    (void)phase;
    return Status::Ok();
  }
};

// One JSON object per line, appended to `path` (a resumed job continues the same file, so a
// reader may see a step's metrics twice and keeps the last). Each line carries "job" and "kind"
// ("metric", "result", "ledger" or "phase"); each call is flushed before it returns.
class JsonlFileSink final : public ReportSink {
 public:
  static Expected<std::unique_ptr<JsonlFileSink>> Open(const std::string& path,
                                                       const std::string& job_id);
  ~JsonlFileSink() override;
  Status Metrics(const std::vector<MetricPoint>& points) override;
  Status Final(const std::vector<ResultRecord>& results, const ComputeLedger& ledger) override;
  Status EnterPhase(const Phase& phase) override;

 private:
  JsonlFileSink(std::FILE* file, std::string path, std::string job_id)
      : file_(file), path_(std::move(path)), job_id_(std::move(job_id)) {}
  Status WriteLines(const std::string& lines);

  std::FILE* file_;
  std::string path_;
  std::string job_id_;
};

// Human-readable lines on a stdio stream (stdout by default): one line per metric batch step,
// a line per phase, a table of results, the ledger.
class StreamSink final : public ReportSink {
 public:
  explicit StreamSink(std::FILE* stream = stdout) : stream_(stream) {}
  Status Metrics(const std::vector<MetricPoint>& points) override;
  Status Final(const std::vector<ResultRecord>& results, const ComputeLedger& ledger) override;
  Status EnterPhase(const Phase& phase) override;

 private:
  std::FILE* stream_;
};

// Sends every record to each of its sinks in turn; the first error wins but all sinks are tried.
class FanoutSink final : public ReportSink {
 public:
  explicit FanoutSink(std::vector<std::unique_ptr<ReportSink>> sinks) : sinks_(std::move(sinks)) {}
  Status Metrics(const std::vector<MetricPoint>& points) override;
  Status Final(const std::vector<ResultRecord>& results, const ComputeLedger& ledger) override;
  Status Checkpoint(int64_t step, const std::string& path, const std::string& sha256) override;
  Status EnterPhase(const Phase& phase) override;

 private:
  std::vector<std::unique_ptr<ReportSink>> sinks_;
};

}  // namespace vitscale::trainer
