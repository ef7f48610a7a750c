// Transfer evaluations behind one interface (big_vision's evaluators): each has a name and a
// Run that takes the pretrained model and returns result records. They are built from the job
// config by MakeEvaluators and run on every rank (collectives inside); rank 0 reports.
//
//   few_shot   frozen features, k-shot ridge regression (few_shot.h), per dataset x shots x seed
//              plus the mean over seeds
//   fine_tune  a copy of the model with a zero-initialised head (optionally at a higher
//              resolution), SGD momentum 0.9, cosine decay after a 10% warm-up, clipping at 1,
//              no weight decay, optionally Polyak-averaged weights; one run per learning rate
//              of the grid on train minus a held-out slice (10% unless the job says), then
//              (final_run) one on the whole split at the lr with the best held-out accuracy,
//              whose test accuracy is reported (App. B.1.1)
//   inspect    the Sec. 4.5 views of a ViT or hybrid (trainer/inspection.h), written as files
//              into the run directory by rank 0
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "data/datasets.h"
#include "models/model.h"
#include "sweep/job_config.h"
#include "trainer/communicator.h"
#include "trainer/report.h"
#include "trainer/train_step.h"

namespace vitscale::trainer {

// What evaluators share; owned by the caller and outliving them.
struct EvalEnv {
  Communicator* comm = nullptr;
  data::DataRoots roots;
  int64_t eval_batch = 256;  // per-rank examples per forward
  int loader_threads = 1;
  uint64_t seed = 0;         // the job's seed: k-shot draws and fine-tune data order
  const std::atomic<bool>* stop_requested = nullptr;
  ReportSink* sink = nullptr;   // rank 0's, for fine-tune curves and phases; null elsewhere
  double eval_flops = 0.0;      // evaluators add what they spend (FLOPs = 2 x MACs)
  DeviceOptions device;         // how fine-tuning steps run on a GPU
  std::string dataset;          // the pretraining dataset, whose images the inspection reads
  std::string run_dir;          // the inspection writes into <run_dir>/inspection
  std::string file_prefix;      // and names its files from the job: the id's first 12 digits

  // Reports a phase to the sink, when this rank has one.
  Status EnterPhase(const Phase& phase) const {
    return sink != nullptr ? sink->EnterPhase(phase) : Status::Ok();
  }
};

class Evaluator {
 public:
  virtual ~Evaluator() = default;
  virtual std::string name() const = 0;
  // kInvalidArgument for what the job got wrong (missing dataset, too few examples for the
  // shots); kUnavailable when a stop was requested mid-way.
  virtual Expected<std::vector<ResultRecord>> Run(models::ModelImpl& model) = 0;
};

// The evaluators of `job` in a fixed order: few-shot (if it names datasets), each fine-tune, then
// the inspection (if the job asks for it).
std::vector<std::unique_ptr<Evaluator>> MakeEvaluators(const sweep::JobConfig& job, EvalEnv* env);

// The inspection alone, for a finished job (`vitscale-train --inspect`).
std::unique_ptr<Evaluator> MakeInspectionEvaluator(EvalEnv* env);

// Means over seeds: one record with seed -1 per (evaluation, dataset, shots, metric) that has
// per-seed records.
std::vector<ResultRecord> AddSeedMeans(std::vector<ResultRecord> records);

}  // namespace vitscale::trainer
