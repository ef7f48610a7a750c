// A job's canonical config: everything that decides what a training run computes, with every
// default filled in. Its JSON form (ToJson) is what the trainer runs and what the job id hashes;
// resources and priority are kept out on purpose, so rescheduling a job never renames it.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace vitscale::sweep {

// Bumped when the meaning of a field changes, so that old ids cannot collide with new ones.
inline constexpr int kJobConfigVersion = 1;

struct TrainConfig {
  std::string optimizer = "adam";  // "adam" or "sgd" (momentum 0.9)
  int64_t batch_size = 0;          // global, summed over ranks
  double epochs = 0;               // the one canonical training length; steps convert to it
  double lr = 0;                   // base learning rate (peak, after warmup)
  double weight_decay = 0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  int64_t warmup_steps = 0;         // linear warmup from 0 to lr
  std::string lr_decay = "linear";  // after warmup: "linear" or "cosine" to 0
  double grad_clip_norm = 0;        // clip at this global norm; 0 = no clipping
  double dropout = 0;
  int64_t resolution = 0;  // square input side in pixels
  // Written into a job's canonical JSON only when set, so that the ids of jobs that leave them
  // alone stay what they were before these fields existed.
  double label_smoothing = 0;          // 0 = plain cross-entropy
  std::optional<int64_t> crop_padding;  // unset = the dataset's default augmentation
  std::optional<bool> flip;             // unset = the dataset's default augmentation
  int64_t pre_logits = 0;               // width of the tanh pre_logits pretraining head; 0 = none
  // Early stopping (Sec. 4.3): every this many steps the validation accuracy is measured and the
  // best model kept; the transfer evaluations then use the best one. 0 = off.
  int64_t early_stopping_every = 0;
};

// Linear few-shot evaluation (Sec. 4.1): closed-form ridge regression on frozen features.
struct FewShotConfig {
  std::vector<std::string> datasets;  // empty = no few-shot evaluation
  std::vector<int64_t> shots;
  int64_t seeds = 0;  // independent draws of the k-shot training set
  double l2 = 0;      // ridge regularisation
};

// Fine-tuning (Table 4): SGD momentum 0.9, cosine decay, no weight decay, clipping at norm 1.
struct FineTuneConfig {
  std::string dataset;
  int64_t steps = 0;
  int64_t resolution = 0;
  std::vector<double> lrs;  // grid; the best on a held-out slice of train is reported
  int64_t batch_size = 0;
  // Written into the canonical JSON only when set (ids of older jobs stay):
  std::optional<double> holdout;  // fraction of train held out to pick the lr; unset = 10%
  // App. B.1.1: after the grid, one more run on the whole train split at the chosen lr, whose
  // test accuracy is the one reported. Unset = false: the chosen grid run's is reported.
  std::optional<bool> final_run;
  std::optional<double> polyak;  // decay of Polyak averaging (e.g. 0.9999); unset = none
};

struct JobConfig {
  std::string model;    // a models/registry.h name
  std::string dataset;  // a sweep/datasets.h name
  int64_t subset = 0;   // first `subset` examples of the permutation drawn with subset_seed
  int64_t subset_seed = 0;
  int64_t seed = 0;  // initialisation and data order
  TrainConfig train;
  FewShotConfig few_shot;
  std::vector<FineTuneConfig> fine_tune;
  // The inspection evaluators (Fig. 6, 7, 11, 14) after pretraining; written only when true.
  bool inspect = false;
};

// Fine-tuning runs a config makes: one per learning rate of the grid on train minus the
// held-out slice, then with final_run one on the whole split at the chosen rate; a final run
// with a single rate has nothing to choose and is the only run.
int64_t FineTuneRuns(const FineTuneConfig& config);

// Early stopping on a dataset without a test split validates on the last
// min(50,000, train / 100) examples of the subset permutation, which subsets must leave free.
int64_t ValidationTailSize(int64_t train_size);

// Canonical JSON: sorted keys, integers as integers, reals as reals, every field present.
nlohmann::json ToJson(const JobConfig& config);
// Lower-case hex SHA-256 of ToJson(config).dump().
std::string JobId(const JobConfig& config);
// Reads a canonical config back (e.g. a trainer's spec file); the error names the field.
Expected<JobConfig> JobConfigFromJson(const nlohmann::json& json);

}  // namespace vitscale::sweep
