// Times one pretraining epoch the way vitscale-train runs it: the same Loader (background
// augmentation threads, bounded prefetch), optimizer, schedule, clipping and RunTrainingLoop,
// on a world of one rank. Prints one JSON line: the timing, plus everything the Python twin
// (bench/train_bench.py) needs to repeat the identical work (model config, augmentation,
// recipe). bench/run_train_bench.sh runs both.
//
//   vitscale-train-bench --model NAME [--dataset fashion-mnist] [--datasets-dir DIR]
//       [--batch 128] [--threads 2] [--loader-threads 1] [--subset 0 (all)]
//       [--lr 1e-3] [--weight-decay 0.01] [--warmup 100] [--clip 1] [--seed 0]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/model_config_json.h"
#include "data/datasets.h"
#include "data/loader.h"
#include "data/order.h"
#include "models/registry.h"
#include "models/zoo.h"
#include "trainer/communicator.h"
#include "trainer/optim.h"
#include "trainer/report.h"
#include "trainer/training.h"

namespace {

using nlohmann::json;
namespace data = vitscale::data;
namespace models = vitscale::models;
namespace trainer = vitscale::trainer;

struct Options {
  std::string model;
  std::string dataset = "fashion-mnist";
  std::string datasets_dir = "/usr/share/datasets";
  int64_t batch = 128;
  int threads = 2;
  int loader_threads = 1;
  int64_t subset = 0;
  double lr = 1e-3;
  double weight_decay = 0.01;
  int64_t warmup = 100;
  double clip = 1.0;
  int64_t seed = 0;
};

// Keeps the last value of each metric, so that both implementations' final loss can be compared.
class LastValues final : public trainer::ReportSink {
 public:
  vitscale::Status Metrics(const std::vector<trainer::MetricPoint>& points) override {
    for (const trainer::MetricPoint& p : points) last_[p.name] = p.value;
    return vitscale::Status::Ok();
  }
  vitscale::Status Final(const std::vector<trainer::ResultRecord>&,
                         const trainer::ComputeLedger&) override {
    return vitscale::Status::Ok();
  }
  double Get(const std::string& name) const {
    auto it = last_.find(name);
    return it == last_.end() ? 0.0 : it->second;
  }

 private:
  std::map<std::string, double> last_;
};

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "vitscale-train-bench: %s needs a value\n", arg.c_str());
      return false;
    }
    const std::string value = argv[++i];
    if (arg == "--model") {
      o->model = value;
    } else if (arg == "--dataset") {
      o->dataset = value;
    } else if (arg == "--datasets-dir") {
      o->datasets_dir = value;
    } else if (arg == "--batch") {
      o->batch = std::atoll(value.c_str());
    } else if (arg == "--threads") {
      o->threads = std::atoi(value.c_str());
    } else if (arg == "--loader-threads") {
      o->loader_threads = std::atoi(value.c_str());
    } else if (arg == "--subset") {
      o->subset = std::atoll(value.c_str());
    } else if (arg == "--lr") {
      o->lr = std::atof(value.c_str());
    } else if (arg == "--weight-decay") {
      o->weight_decay = std::atof(value.c_str());
    } else if (arg == "--warmup") {
      o->warmup = std::atoll(value.c_str());
    } else if (arg == "--clip") {
      o->clip = std::atof(value.c_str());
    } else if (arg == "--seed") {
      o->seed = std::atoll(value.c_str());
    } else {
      std::fprintf(stderr, "vitscale-train-bench: unknown option '%s'\n", arg.c_str());
      return false;
    }
  }
  if (o->model.empty() || o->batch <= 0 || o->threads <= 0 || o->loader_threads <= 0 ||
      o->subset < 0) {
    std::fprintf(stderr,
                 "usage: vitscale-train-bench --model NAME [--dataset D] [--datasets-dir DIR] "
                 "[--batch B] [--threads N] [--loader-threads N] [--subset N] [--lr X] "
                 "[--weight-decay X] [--warmup S] [--clip X] [--seed S]\n");
    return false;
  }
  return true;
}

int Fail(const vitscale::Status& status) {
  std::fprintf(stderr, "vitscale-train-bench: %s\n", status.ToString().c_str());
  return 1;
}

int Run(const Options& o) {
  torch::set_num_threads(o.threads);
  data::DataRoots roots;
  roots.datasets_dir = o.datasets_dir;
  auto dataset = data::LoadDataset(o.dataset, roots);
  if (!dataset.ok()) return Fail(dataset.status());
  auto subset = data::NestedSubset(dataset->train.size(), o.subset, 0);
  if (!subset.ok()) return Fail(subset.status());
  auto plan = data::BatchPlan::Create(*subset, o.batch, o.seed, 1);
  if (!plan.ok()) return Fail(plan.status());
  auto config = models::LookupModel(o.model);
  if (!config.ok()) return Fail(config.status());
  const data::AugmentOptions augment = data::DefaultAugment(*dataset, 28);
  torch::manual_seed(o.seed);
  auto model = models::BuildModel(*config, dataset->num_classes, augment.resolution);
  if (!model.ok()) return Fail(model.status());
  auto comm = trainer::MpiCommunicator::Create();
  if (!comm.ok()) return Fail(comm.status());

  trainer::OptimizerConfig optimizer_config;
  optimizer_config.weight_decay = o.weight_decay;
  auto optimizer = trainer::MakeOptimizer(optimizer_config, (*model)->parameters());
  const int64_t steps = static_cast<int64_t>(plan->steps_per_epoch());
  trainer::LoopOptions loop;
  loop.total_steps = steps;
  loop.schedule = {o.lr, o.warmup, steps, trainer::Decay::kCosine, 0.0};
  loop.clip_norm = o.clip;
  loop.seed = static_cast<uint64_t>(o.seed);
  loop.metrics_every = steps;  // one report, at the end: nothing else inside the timed loop
  LastValues last;
  trainer::LoopHooks hooks;
  hooks.sink = &last;
  data::LoaderOptions loader_options;
  loader_options.augment = augment;
  loader_options.threads = o.loader_threads;
  loader_options.prefetch = std::max(2, o.loader_threads);

  // Timed like the Python twin's epoch: from starting the loader to the last optimizer step.
  const auto start = std::chrono::steady_clock::now();
  auto loader = data::Loader::Create(dataset->train, *plan, 0, 0, loader_options);
  if (!loader.ok()) return Fail(loader.status());
  int64_t step = 0, images_seen = 0;
  auto end = trainer::RunTrainingLoop(**model, *optimizer, **comm, **loader, loop, hooks, &step,
                                      &images_seen);
  if (!end.ok()) return Fail(end.status());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  loader->reset();

  int64_t params = 0;
  for (const torch::Tensor& p : (*model)->parameters()) params += p.numel();
  json line = {{"impl", "C++"},
               {"model", o.model},
               {"config", vitscale::bench::ModelConfigJson(*config)},
               {"dataset", o.dataset},
               {"datasets_dir", o.datasets_dir},
               {"num_classes", dataset->num_classes},
               {"resolution", augment.resolution},
               {"crop_padding", augment.crop_padding},
               {"flip", augment.flip},
               {"mean", augment.mean},
               {"std", augment.std},
               {"subset", subset->size()},
               {"batch", o.batch},
               {"threads", o.threads},
               {"torch_threads", torch::get_num_threads()},  // what LibTorch really applied
               {"loader_threads", o.loader_threads},
               {"lr", o.lr},
               {"weight_decay", o.weight_decay},
               {"warmup", o.warmup},
               {"clip", o.clip},
               {"steps", steps},
               {"images", images_seen},
               {"params", params},
               {"seconds", seconds},
               {"images_per_sec", images_seen / seconds},
               {"final_loss", last.Get("loss")},
               {"final_train_accuracy", last.Get("train_accuracy")}};
  std::printf("%s\n", line.dump().c_str());
  std::fflush(stdout);
  comm->reset();
  trainer::FinalizeMpi();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!ParseArgs(argc, argv, &options)) return 2;
  try {
    return Run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitscale-train-bench: %s\n", e.what());
    return 1;
  }
}
