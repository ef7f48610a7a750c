// Sweep definitions: a YAML file (docs/sweeps.md) parsed into a typed Sweep, then expanded into
// canonical jobs. Parsing checks everything that does not depend on a particular job (keys,
// names, value ranges, axis shapes); expansion checks each job (subset against its dataset,
// model shape at its resolutions) and costs it. Every error is "file:line:column: what to fix"
// (kInvalidArgument), and nothing is written anywhere: callers print or store the result only
// after the whole sweep succeeded. Plain functions over values: safe from any thread.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/status.h"
#include "sweep/job_config.h"
#include "sweep/recipes.h"

namespace vitscale::sweep {

// Where a value came from in the YAML text; 1-based.
struct SourceMark {
  int line = 1;
  int column = 1;
};

// One job setting, typed by its key: integers (sizes, steps, seeds) as int64_t, reals as
// double, names as std::string. "9M", 9000000 and 9e6 are the same int64_t.
using SettingValue = std::variant<int64_t, double, std::string>;

struct Setting {
  std::string key;  // a JobSettingKeys() entry
  SettingValue value;
  SourceMark mark;
};

// The keys a job setting may have, under `pretrain:` and in grid blocks.
const std::vector<std::string>& JobSettingKeys();

// One axis: a key and the values it runs over.
struct Axis {
  std::string key;
  std::vector<Setting> values;
  SourceMark mark;
};

// Axes walked together: one axis on its own, or a `zip:` of equal-length axes in lockstep.
struct AxisGroup {
  std::vector<Axis> axes;
  bool zipped = false;
  SourceMark mark;
  size_t size() const { return axes.empty() ? 0 : axes.front().values.size(); }
};

struct Resources {
  int64_t ranks = 1;          // MPI ranks per job
  int64_t gpus_per_rank = 0;  // 0 = CPU ranks
};

// One grid block: the product of its groups, in the order they are written.
struct GridBlock {
  std::vector<AxisGroup> groups;
  std::optional<Recipe> recipe;        // replaces the sweep's recipe for this block's jobs
  std::optional<Resources> resources;  // overrides the sweep's for this block's jobs
  std::optional<int64_t> priority;
  SourceMark mark;
};

// A fine-tuning evaluation as written, defaults filled in from the recipe and Table 4.
struct FineTuneSpec {
  FineTuneConfig config;
  // Without an explicit resolution, each job fine-tunes at the recipe's resolution rounded down
  // to a multiple of its model's patch (or backbone stride): ViT-H/14 at 378 where the others
  // use 384, as the paper's patch convolution without padding drops the remainder.
  bool resolution_given = false;
  SourceMark mark;
};

struct Sweep {
  std::string file;  // as given to ParseSweep, for messages
  std::string name;
  std::string description;
  Recipe recipe;
  SourceMark recipe_mark;
  std::vector<Setting> pretrain;  // fixed for every job, under the grid's values
  SourceMark pretrain_mark;
  std::vector<GridBlock> grid;  // empty: one job from `pretrain:` alone
  FewShotConfig few_shot;       // defaults filled in from the recipe
  std::vector<FineTuneSpec> fine_tune;
  Resources resources;
  int64_t priority = 0;  // higher runs first
};

// One expanded job: its canonical config and id, and what scheduling and costing need.
struct Job {
  std::string id;  // JobId(config)
  JobConfig config;
  nlohmann::json canonical;  // ToJson(config)
  std::string family;        // models::FamilyName of the model
  int64_t examples = 0;      // images seen in pretraining: epochs x subset
  double train_flops = 0;    // 6 x forward MACs (pretraining resolution and classes) x examples
  // The same for every fine-tuning run: 6 x MACs (its resolution and classes) x steps x batch,
  // summed over the learning-rate grid and the fine-tune datasets.
  double fine_tune_flops = 0;
  int64_t priority = 0;
  Resources resources;
};

// `file` names the source in messages only.
Expected<Sweep> ParseSweep(std::string_view text, const std::string& file);
// Reads and parses a file; kNotFound when it does not exist.
Expected<Sweep> LoadSweepFile(const std::string& path);
// The most jobs one sweep may expand to: far more than any study here needs, and a bound on
// what one submission can make the coordinator compute and store.
constexpr int64_t kMaxSweepJobs = 100000;

// Every job of the sweep, blocks in file order, each block's product with its first axis
// slowest. Two blocks that make the same job are an error, and so is a sweep of more than
// kMaxSweepJobs jobs (refused before any is made).
Expected<std::vector<Job>> ExpandSweep(const Sweep& sweep);

}  // namespace vitscale::sweep
