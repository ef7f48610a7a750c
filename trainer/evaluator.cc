#include "trainer/evaluator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <tuple>

#include "data/order.h"
#include "models/registry.h"
#include "models/vit.h"
#include "models/zoo.h"
#include "trainer/device.h"
#include "trainer/few_shot.h"
#include "trainer/inspection.h"
#include "trainer/optim.h"
#include "trainer/train_state.h"
#include "trainer/training.h"

namespace vitscale::trainer {
namespace {

Expected<data::Dataset> LoadForJob(const std::string& name, const EvalEnv& env,
                                   const std::string& field) {
  Expected<data::Dataset> dataset = data::LoadDataset(name, env.roots);
  if (!dataset.ok()) {
    return InvalidArgument("field '" + field + "': " + dataset.status().message());
  }
  return dataset;
}

double ForwardFlops(const models::ModelImpl& model, int resolution, int num_classes) {
  return 2.0 * static_cast<double>(
                   models::ComputeCost(model.config(), resolution, num_classes).forward_macs);
}

class FewShotEvaluator final : public Evaluator {
 public:
  FewShotEvaluator(sweep::FewShotConfig config, EvalEnv* env)
      : config_(std::move(config)), env_(env) {}
  std::string name() const override { return "few_shot"; }

  Expected<std::vector<ResultRecord>> Run(models::ModelImpl& model) override {
    std::vector<ResultRecord> records;
    const int64_t max_shots = *std::max_element(config_.shots.begin(), config_.shots.end());
    const int64_t parts = static_cast<int64_t>(config_.datasets.size()) * config_.seeds;
    int64_t part = 0;
    for (size_t d = 0; d < config_.datasets.size(); ++d) {
      const std::string& name = config_.datasets[d];
      ASSIGN_OR_RETURN(data::Dataset dataset,
                       LoadForJob(name, *env_, "job.few_shot.datasets[" + std::to_string(d) + "]"));
      data::AugmentOptions augment = data::DefaultAugment(dataset, model.resolution());
      std::vector<uint32_t> test_indices(dataset.test.size());
      for (size_t i = 0; i < test_indices.size(); ++i) test_indices[i] = i;
      ASSIGN_OR_RETURN(torch::Tensor test_features,
                       ExtractFeatures(model, *env_->comm, dataset.test, test_indices, augment,
                                       env_->eval_batch, env_->loader_threads));
      torch::Tensor test_labels = torch::tensor(dataset.test.labels(), torch::kInt64);
      double images = static_cast<double>(test_indices.size());
      for (int64_t seed = 0; seed < config_.seeds; ++seed) {
        RETURN_IF_ERROR(env_->EnterPhase(
            {kPhaseFewShot, ++part, parts, name + " seed " + std::to_string(seed)}));
        // The max-shot draw holds every smaller one: class c's first k are its block's first k.
        Expected<std::vector<uint32_t>> drawn =
            KShotIndices(dataset.train.labels(), dataset.num_classes, max_shots,
                         data::HashValues({env_->seed, static_cast<uint64_t>(seed)}));
        if (!drawn.ok()) {
          return InvalidArgument("few-shot on '" + name + "': " + drawn.status().message());
        }
        ASSIGN_OR_RETURN(torch::Tensor features,
                         ExtractFeatures(model, *env_->comm, dataset.train, *drawn, augment,
                                         env_->eval_batch, env_->loader_threads));
        images += static_cast<double>(drawn->size());
        for (int64_t shots : config_.shots) {
          std::vector<int64_t> rows, labels;
          for (int c = 0; c < dataset.num_classes; ++c) {
            for (int64_t k = 0; k < shots; ++k) {
              rows.push_back(c * max_shots + k);
              labels.push_back(c);
            }
          }
          torch::Tensor x = features.index_select(0, torch::tensor(rows, torch::kInt64));
          RidgeClassifier classifier =
              FitRidge(x, torch::tensor(labels, torch::kInt64), dataset.num_classes, config_.l2);
          records.push_back({"few_shot", name, shots, seed, "accuracy",
                             RidgeAccuracy(classifier, test_features, test_labels)});
        }
      }
      env_->eval_flops += images * ForwardFlops(model, model.resolution(), model.num_classes());
    }
    return AddSeedMeans(std::move(records));
  }

 private:
  sweep::FewShotConfig config_;
  EvalEnv* env_;
};

class FineTuneEvaluator final : public Evaluator {
 public:
  FineTuneEvaluator(sweep::FineTuneConfig config, size_t index, EvalEnv* env)
      : config_(std::move(config)), index_(index), env_(env) {}
  std::string name() const override { return "fine_tune"; }

  Expected<std::vector<ResultRecord>> Run(models::ModelImpl& pretrained) override {
    const std::string field = "job.fine_tune[" + std::to_string(index_) + "]";
    ASSIGN_OR_RETURN(data::Dataset dataset, LoadForJob(config_.dataset, *env_, field + ".dataset"));
    Communicator& comm = *env_->comm;
    if (config_.batch_size % comm.size() != 0) {
      return InvalidArgument("field '" + field + ".batch_size' (" +
                             std::to_string(config_.batch_size) + ") must be divisible by the " +
                             std::to_string(comm.size()) + " ranks");
    }
    const int resolution = static_cast<int>(config_.resolution);
    const data::AugmentOptions augment = data::DefaultAugment(dataset, resolution);
    const bool final_run = config_.final_run.value_or(false);
    // A final run with a single rate has nothing to choose: it is the only run.
    const bool grid = !final_run || config_.lrs.size() > 1;
    const int64_t runs = sweep::FineTuneRuns(config_);
    int64_t run = 0;

    std::vector<ResultRecord> records;
    double chosen_lr = config_.lrs.front(), best_holdout = -1.0, best_test = 0.0;
    if (grid) {
      // The held-out slice of train, drawn once: it picks the learning rate.
      std::vector<uint32_t> order = data::SeededPermutation(
          dataset.train.size(), data::HashValues({env_->seed, 0x66696e65ull}));
      const double fraction = config_.holdout.value_or(0.1);
      const size_t holdout_size = std::max<size_t>(
          1, static_cast<size_t>(static_cast<double>(dataset.train.size()) * fraction));
      std::vector<uint32_t> holdout(order.begin(), order.begin() + holdout_size);
      std::vector<uint32_t> train(order.begin() + holdout_size, order.end());
      const data::Split holdout_split = dataset.train.Select(holdout);
      for (double lr : config_.lrs) {
        std::ostringstream label;
        label << config_.dataset << " lr=" << lr;
        RETURN_IF_ERROR(env_->EnterPhase({kPhaseFineTune, ++run, runs, label.str()}));
        std::ostringstream prefix;
        prefix << "fine_tune/" << config_.dataset << "/lr=" << lr << "/";
        const uint64_t seed =
            data::HashValues({env_->seed, index_, static_cast<uint64_t>(lr * 1e9)});
        ASSIGN_OR_RETURN(models::Model model,
                         Train(pretrained, dataset, train, augment, lr, seed, prefix.str(), field));
        ASSIGN_OR_RETURN(double holdout_accuracy,
                         EvaluateAccuracy(*model, comm, holdout_split, augment, env_->eval_batch,
                                          env_->loader_threads));
        ASSIGN_OR_RETURN(double test_accuracy,
                         EvaluateAccuracy(*model, comm, dataset.test, augment, env_->eval_batch,
                                          env_->loader_threads));
        env_->eval_flops += ForwardFlops(*model, resolution, dataset.num_classes) *
                            static_cast<double>(holdout_split.size() + dataset.test.size());
        std::ostringstream at;
        at << "@lr=" << lr;
        records.push_back(
            {"fine_tune", config_.dataset, 0, -1, "holdout_accuracy" + at.str(), holdout_accuracy});
        records.push_back(
            {"fine_tune", config_.dataset, 0, -1, "accuracy" + at.str(), test_accuracy});
        if (holdout_accuracy > best_holdout) {
          best_holdout = holdout_accuracy;
          best_test = test_accuracy;
          chosen_lr = lr;
        }
      }
    }
    if (final_run) {
      // App. B.1.1: the reported run trains on the whole training split at the chosen rate.
      std::ostringstream label;
      label << config_.dataset << " final lr=" << chosen_lr;
      RETURN_IF_ERROR(env_->EnterPhase({kPhaseFineTune, ++run, runs, label.str()}));
      std::vector<uint32_t> all(dataset.train.size());
      for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint32_t>(i);
      std::ostringstream prefix;
      prefix << "fine_tune/" << config_.dataset << "/final/lr=" << chosen_lr << "/";
      const uint64_t seed = data::HashValues(
          {env_->seed, index_, static_cast<uint64_t>(chosen_lr * 1e9), 0x66696e616cull});
      ASSIGN_OR_RETURN(models::Model model, Train(pretrained, dataset, all, augment, chosen_lr,
                                                  seed, prefix.str(), field));
      ASSIGN_OR_RETURN(best_test, EvaluateAccuracy(*model, comm, dataset.test, augment,
                                                   env_->eval_batch, env_->loader_threads));
      env_->eval_flops += ForwardFlops(*model, resolution, dataset.num_classes) *
                          static_cast<double>(dataset.test.size());
    }
    records.push_back({"fine_tune", config_.dataset, 0, -1, "chosen_lr", chosen_lr});
    records.push_back({"fine_tune", config_.dataset, 0, -1, "accuracy", best_test});
    return records;
  }

 private:
  // One fine-tuning run from the pretrained weights on `train` (indices into the training
  // split) at `lr`; returns the tuned model, Polyak-averaged when the job asks for it.
  Expected<models::Model> Train(models::ModelImpl& pretrained, const data::Dataset& dataset,
                                const std::vector<uint32_t>& train,
                                const data::AugmentOptions& augment, double lr, uint64_t seed,
                                const std::string& metric_prefix, const std::string& field) {
    const int resolution = static_cast<int>(config_.resolution);
    ASSIGN_OR_RETURN(models::Model model,
                     CopyForFineTune(pretrained, dataset.num_classes, resolution, field));
    const double flops_per_image = ForwardFlops(*model, resolution, dataset.num_classes);
    ASSIGN_OR_RETURN(std::unique_ptr<data::Loader> loader,
                     MakeLoader(dataset, train, augment, field));
    OptimizerConfig optimizer_config;
    optimizer_config.kind = OptimizerKind::kSgd;
    std::vector<torch::Tensor> params = model->parameters();
    auto optimizer = MakeOptimizer(optimizer_config, params);
    LoopOptions loop;
    loop.total_steps = config_.steps;
    loop.schedule = {lr, config_.steps / 10, config_.steps, Decay::kCosine, 0.0};
    loop.clip_norm = 1.0;
    loop.seed = seed;
    loop.metrics_every = std::max<int64_t>(1, config_.steps / 10);
    loop.metric_prefix = metric_prefix;
    loop.train_flops_per_image = 3.0 * flops_per_image;
    loop.device = env_->device;
    LoopHooks hooks;
    hooks.sink = env_->sink;
    hooks.stop_requested = env_->stop_requested;
    // Polyak averaging: an exponential moving average of the weights, updated after every step
    // (identically on every rank) and evaluated in their place.
    std::vector<torch::Tensor> average;
    const double decay = config_.polyak.value_or(0.0);
    if (decay > 0) {
      torch::NoGradGuard no_grad;
      for (const torch::Tensor& p : params) average.push_back(p.detach().clone());
      hooks.after_step = [&](int64_t, bool) -> Status {
        torch::NoGradGuard no_grad;
        for (size_t i = 0; i < params.size(); ++i) {
          average[i].mul_(decay).add_(params[i].detach(), 1.0 - decay);
        }
        return Status::Ok();
      };
    }
    int64_t step = 0, images = 0;
    ASSIGN_OR_RETURN(LoopEnd end, RunTrainingLoop(*model, *optimizer, *env_->comm, *loader, loop,
                                                  hooks, &step, &images));
    if (end == LoopEnd::kStopped) return Unavailable("stopped during fine-tuning");
    env_->eval_flops += 3.0 * flops_per_image * static_cast<double>(images);
    if (decay > 0) {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < params.size(); ++i) params[i].copy_(average[i]);
    }
    return model;
  }

  Expected<std::unique_ptr<data::Loader>> MakeLoader(const data::Dataset& dataset,
                                                     const std::vector<uint32_t>& train,
                                                     const data::AugmentOptions& augment,
                                                     const std::string& field) {
    Expected<data::BatchPlan> plan = data::BatchPlan::Create(
        train, config_.batch_size, env_->seed, env_->comm->size());
    if (!plan.ok()) return InvalidArgument("field '" + field + "': " + plan.status().message());
    data::LoaderOptions options;
    options.augment = augment;
    options.train = true;
    options.threads = env_->loader_threads;
    options.prefetch = std::max(2, env_->loader_threads);
    return data::Loader::Create(dataset.train, *plan, env_->comm->rank(), 0, options);
  }

  // A copy of the pretrained weights with a new zero head at `resolution`.
  Expected<models::Model> CopyForFineTune(models::ModelImpl& pretrained, int num_classes,
                                          int resolution, const std::string& field) {
    ASSIGN_OR_RETURN(models::Model model,
                     models::BuildModel(pretrained.config(), pretrained.num_classes(),
                                        pretrained.resolution()));
    ASSIGN_OR_RETURN(std::string weights, SerializeModule(pretrained));
    RETURN_IF_ERROR(LoadModule(weights, *model));
    model->to(DeviceOf(pretrained));
    RETURN_IF_ERROR(model->ReplaceHead(num_classes));
    Status resized = model->ResizePositionEmbedding(resolution);
    if (!resized.ok()) {
      return InvalidArgument("field '" + field + ".resolution': " + resized.message());
    }
    return model;
  }

  sweep::FineTuneConfig config_;
  size_t index_;
  EvalEnv* env_;
};

// The inspection views (trainer/inspection.h) on the first images of the pretraining dataset's
// test split (its training split when it has no test split), drawn by rank 0.
class InspectionEvaluator final : public Evaluator {
 public:
  explicit InspectionEvaluator(EvalEnv* env) : env_(env) {}
  std::string name() const override { return "inspect"; }

  Expected<std::vector<ResultRecord>> Run(models::ModelImpl& model) override {
    auto* vit = dynamic_cast<models::ViTImpl*>(&model);
    if (vit == nullptr) {
      return InvalidArgument("field 'job.inspect': " + model.name() +
                             " is a ResNet; the inspection reads a transformer's embeddings and "
                             "attention");
    }
    if (env_->comm->rank() != 0) return std::vector<ResultRecord>{};
    ASSIGN_OR_RETURN(data::Dataset dataset, LoadForJob(env_->dataset, *env_, "job.dataset"));
    const data::Split& split = dataset.test.size() > 0 ? dataset.test : dataset.train;
    InspectionOptions options;
    options.dir = (std::filesystem::path(env_->run_dir) / "inspection").string();
    options.prefix = env_->file_prefix;
    const size_t count =
        std::min<size_t>(split.size(), static_cast<size_t>(options.distance_images));
    std::vector<uint32_t> indices(count);
    for (size_t i = 0; i < count; ++i) indices[i] = static_cast<uint32_t>(i);
    ASSIGN_OR_RETURN(
        data::Batch batch,
        data::MakeBatch(split, indices, data::DefaultAugment(dataset, model.resolution()), false, 0,
                        0, env_->loader_threads));
    ASSIGN_OR_RETURN(std::vector<InspectionView> views,
                     Inspect(*vit, batch.images, options, [&](int index, int total) {
                       const std::vector<std::string> names = InspectionViewNames(model);
                       return env_->EnterPhase({kPhaseInspection, index + 1, total, names[index]});
                     }));
    env_->eval_flops +=
        ForwardFlops(model, model.resolution(), model.num_classes()) * static_cast<double>(count);
    size_t files = 0;
    for (const InspectionView& view : views) files += view.files.size();
    std::fprintf(stderr, "vitscale-train: inspection: %zu files in %s\n", files,
                 options.dir.c_str());
    return std::vector<ResultRecord>{};
  }

 private:
  EvalEnv* env_;
};

}  // namespace

std::vector<ResultRecord> AddSeedMeans(std::vector<ResultRecord> records) {
  std::map<std::tuple<std::string, std::string, int64_t, std::string>, std::pair<double, int>>
      sums;
  std::vector<std::tuple<std::string, std::string, int64_t, std::string>> order;
  for (const ResultRecord& r : records) {
    if (r.seed < 0) continue;
    auto key = std::make_tuple(r.evaluation, r.dataset, r.shots, r.metric);
    if (!sums.count(key)) order.push_back(key);
    sums[key].first += r.value;
    sums[key].second += 1;
  }
  for (const auto& key : order) {
    const auto& [sum, count] = sums[key];
    records.push_back({std::get<0>(key), std::get<1>(key), std::get<2>(key), -1,
                       std::get<3>(key), sum / count});
  }
  return records;
}

std::vector<std::unique_ptr<Evaluator>> MakeEvaluators(const sweep::JobConfig& job, EvalEnv* env) {
  std::vector<std::unique_ptr<Evaluator>> evaluators;
  if (!job.few_shot.datasets.empty()) {
    evaluators.push_back(std::make_unique<FewShotEvaluator>(job.few_shot, env));
  }
  for (size_t i = 0; i < job.fine_tune.size(); ++i) {
    evaluators.push_back(std::make_unique<FineTuneEvaluator>(job.fine_tune[i], i, env));
  }
  if (job.inspect) evaluators.push_back(MakeInspectionEvaluator(env));
  return evaluators;
}

std::unique_ptr<Evaluator> MakeInspectionEvaluator(EvalEnv* env) {
  return std::make_unique<InspectionEvaluator>(env);
}

}  // namespace vitscale::trainer
