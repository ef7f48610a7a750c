// The job spec vitscale-train runs (docs/train-spec.md): a JSON object with
//   "job": the canonical job config (sweep/job_config.h) — what is computed, hashed into the id;
//   "run": how this run goes — directories, checkpoint cadence, threads, reporting — which may
//          change between attempts without changing the job.
// Parsing is strict: a missing field, a wrong type or an unknown "run" field is a configuration
// error naming the field (and the nearest valid name for a typo).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "protocol/enums.h"
#include "sweep/job_config.h"
#include "trainer/precision.h"

namespace vitscale::trainer {

// vitscale-train's exit statuses (sysexits.h values where one fits). The coordinator retries
// kExitFailure while retries remain, requeues kExitPreempted without counting an attempt, and
// never retries kExitConfigError.
// The values live in protocol/enums.h, which the agent reads too.
enum ExitStatus : int {
  kExitDone = protocol::kTrainExitSucceeded,
  kExitFailure = protocol::kTrainExitFailed,  // I/O errors, a dead peer rank, diverged replicas
  kExitPreempted = protocol::kTrainExitPreempted,      // stopped on SIGTERM after checkpointing
  kExitConfigError = protocol::kTrainExitConfigError,  // the spec, a dataset or a checkpoint is wrong
  kExitOutOfMemory = protocol::kTrainExitOutOfMemory,  // the next attempt halves the batch that failed
};

struct RunOptions {
  std::string dir;                     // required: checkpoints/, report.jsonl and final.pt go here
  int64_t checkpoint_every_steps = 0;  // 0: only at the end and on preemption
  int64_t keep_checkpoints = 2;
  double grace_seconds = 30;           // the time SIGTERM leaves; warned about if steps are slower
  std::string init_from;               // weights to start from when there is no checkpoint
  bool stdout_report = true;           // human-readable lines on stdout (rank 0)
  int64_t metrics_every_steps = 10;
  int64_t threads = 1;                 // LibTorch intra-op threads per rank
  int64_t loader_threads = 1;          // decode/augment threads per rank
  int64_t max_bad_samples = 100;       // unreadable training samples replaced before failing
  int64_t micro_batch = 0;             // per-rank examples per forward; 0 = the whole rank batch
  int64_t eval_batch = 256;            // per-rank examples per forward in evaluations
  std::string datasets_dir = "/usr/share/datasets";
  bool verify_replicas = false;        // check every step that all ranks hold equal parameters
  // Where rank 0 also reports (the coordinator, docs/api.md): empty = files and stdout only.
  std::string report_url;
  std::string report_token;            // this attempt's own, dead once the attempt ends
  int64_t attempt = 0;                 // the coordinator's attempt number, for report_url
  // Devices (docs/gpu.md): 0 = CPU ranks; 1 = each rank on its own GPU, the local rank's among
  // those CUDA_VISIBLE_DEVICES shows.
  int64_t gpus_per_rank = 0;
  Precision precision = Precision::kAuto;  // auto = bf16 autocast on a GPU
  bool cuda_graphs = true;             // capture GPU steps as CUDA graphs where LibTorch allows
  bool deterministic = false;          // GPU kernels that repeat bit for bit (slower)
};

struct JobSpec {
  std::string job_id;  // sweep::JobId(job)
  sweep::JobConfig job;
  RunOptions run;
};

// `origin` names the text in errors (the spec file's path).
Expected<JobSpec> ParseJobSpec(const std::string& text, const std::string& origin);
Expected<JobSpec> LoadJobSpec(const std::string& path);

// ParseJobSpec's checks of values against what the trainer supports (model name, optimizer,
// decay, positive sizes); the error names the field.
Status ValidateJobSpec(const JobSpec& spec);

}  // namespace vitscale::trainer
