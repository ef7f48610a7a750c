// vitscale-train: one MPI rank of a job (docs/train-spec.md).
//   mpirun -np N build/bin/vitscale-train --spec job.json
// Reads top to bottom in phases: input; model and optimizer; checkpoint (resume, then
// init-from, then scratch); reporting; the training loop; evaluations. Exit statuses are
// trainer::ExitStatus (0 done, 75 preempted, 78 configuration error, 79 out of memory, 1 other
// failure).
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "data/datasets.h"
#include "data/loader.h"
#include "data/order.h"
#include "models/checkpoint.h"
#include "models/init_from.h"
#include "models/registry.h"
#include "models/zoo.h"
#include "common/files.h"
#include "common/flags.h"
#include "common/sha256.h"
#include "trainer/checkpoint_store.h"
#include "trainer/http_sink.h"
#include "trainer/communicator.h"
#include "trainer/device.h"
#include "trainer/evaluator.h"
#include "trainer/job_spec.h"
#if VITSCALE_WITH_NCCL
#include "trainer/nccl_communicator.h"
#endif
#include "trainer/optim.h"
#include "trainer/report.h"
#include "trainer/train_state.h"
#include "trainer/training.h"

namespace vitscale::trainer {
namespace {

std::atomic<bool> stop_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" void OnSigterm(int) { stop_requested.store(true); }

// A failed phase: the exit status it maps to and the message.
struct Failure {
  ExitStatus exit_status;
  Status status;
};

// Configuration errors are the job's fault: the coordinator must not retry them.
Failure ConfigError(const Status& status) { return {kExitConfigError, status}; }
Failure OtherFailure(const Status& status) { return {kExitFailure, status}; }
Failure FromStatus(const Status& status) {
  if (status.code() == StatusCode::kInvalidArgument) return ConfigError(status);
  if (status.code() == StatusCode::kResourceExhausted) return {kExitOutOfMemory, status};
  return OtherFailure(status);
}

// What earlier attempts of this job learnt about memory: the per-rank sizes that did not fit
// (0: none). Kept in the run directory, which every attempt of a job shares, so that a retry
// after running out of memory trains with half the micro-batch (or evaluates with half the
// evaluation batch) instead of failing the same way again.
struct MemoryLimits {
  int64_t micro_batch = 0;  // pretraining images per forward/backward that ran out of memory
  int64_t eval_batch = 0;   // evaluation images per forward that ran out of memory
};

std::string MemoryLimitsPath(const RunOptions& run) {
  return (std::filesystem::path(run.dir) / "out_of_memory.json").string();
}

MemoryLimits ReadMemoryLimits(const RunOptions& run) {
  MemoryLimits limits;
  Expected<std::string> text = ReadFile(MemoryLimitsPath(run));
  if (!text.ok()) return limits;
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    limits.micro_batch = j.value("micro_batch", int64_t{0});
    limits.eval_batch = j.value("eval_batch", int64_t{0});
  }
  return limits;
}

// The size the next attempt uses after `failed` ran out of memory.
int64_t Halve(int64_t failed) { return std::max<int64_t>(1, failed / 2); }

#define TRY_CONFIG(lhs, expr)                                     \
  auto VITSCALE_CONCAT(_c_, __LINE__) = (expr);                   \
  if (!VITSCALE_CONCAT(_c_, __LINE__).ok())                       \
    return ConfigError(VITSCALE_CONCAT(_c_, __LINE__).status());  \
  lhs = std::move(VITSCALE_CONCAT(_c_, __LINE__)).value()
#define TRY(lhs, expr)                                             \
  auto VITSCALE_CONCAT(_t_, __LINE__) = (expr);                    \
  if (!VITSCALE_CONCAT(_t_, __LINE__).ok())                        \
    return FromStatus(VITSCALE_CONCAT(_t_, __LINE__).status());    \
  lhs = std::move(VITSCALE_CONCAT(_t_, __LINE__)).value()
#define TRY_STATUS(expr)                           \
  do {                                             \
    Status _s = (expr);                            \
    if (!_s.ok()) return FromStatus(_s);           \
  } while (0)

class Job {
 public:
  explicit Job(MpiCommunicator& mpi) : mpi_(mpi) {}

  // NCCL once a GPU job with several ranks has set it up, MPI otherwise.
  Communicator& comm() { return nccl_ ? *nccl_ : static_cast<Communicator&>(mpi_); }

  // Runs the spec at `spec_path`; returns the failure, or kExitDone / kExitPreempted.
  Failure Run(const std::string& spec_path) {
    const auto started = std::chrono::steady_clock::now();
    // ---- Phase 1: input.
    TRY_CONFIG(spec_, LoadJobSpec(spec_path));
    const sweep::JobConfig& job = spec_.job;
    const RunOptions& run = spec_.run;
    torch::set_num_threads(static_cast<int>(run.threads));
    if (run.deterministic && run.gpus_per_rank > 0) UseDeterministicGpuKernels();
    TRY_CONFIG(const torch::Device device, SelectDevice(run.gpus_per_rank));
    if (device.is_cuda() && comm().size() > 1) {
#if VITSCALE_WITH_NCCL
      TRY(nccl_, NcclCommunicator::Create(mpi_, device));
#else
      return ConfigError(InvalidArgument(
          "a GPU job of " + std::to_string(comm().size()) + " ranks needs the NCCL "
          "communicator, and this vitscale-train is built without it (-DVITSCALE_WITH_NCCL=ON, "
          "docs/gpu.md)"));
#endif
    }
    if (device.is_cuda()) Log("training on " + DescribeDevice(device));
    data::DataRoots roots;
    roots.datasets_dir = run.datasets_dir;
    Expected<data::Dataset> loaded = data::LoadDataset(job.dataset, roots);
    if (!loaded.ok()) return ConfigError(InvalidArgument("field 'job.dataset': " + loaded.status().message()));
    data::Dataset dataset = std::move(loaded).value();
    Expected<std::vector<uint32_t>> subset =
        data::NestedSubset(dataset.train.size(), job.subset, job.subset_seed);
    if (!subset.ok()) return ConfigError(InvalidArgument("field 'job.subset': " + subset.status().message()));
    Expected<data::BatchPlan> plan =
        data::BatchPlan::Create(*subset, job.train.batch_size, job.seed, comm().size());
    if (!plan.ok()) {
      return ConfigError(InvalidArgument("field 'job.train.batch_size' with " +
                                         std::to_string(comm().size()) +
                                         " ranks: " + plan.status().message()));
    }
    const int resolution = static_cast<int>(job.train.resolution);
    // Early stopping validates on the test split, or without one on the tail of the subset
    // permutation, which the subset must leave free (sweep::ValidationTailSize).
    data::Split validation;
    const bool early_stopping = job.train.early_stopping_every > 0;
    if (early_stopping) {
      if (dataset.test.size() > 0) {
        validation = dataset.test;
      } else {
        const size_t n = dataset.train.size();
        const size_t tail = static_cast<size_t>(sweep::ValidationTailSize(static_cast<int64_t>(n)));
        if (tail == 0 || subset->size() + tail > n) {
          return ConfigError(InvalidArgument(
              "field 'job.train.early_stopping_every': " + job.dataset +
              " has no test split, so "
              "validation takes the last " +
              std::to_string(tail) + " of its " + std::to_string(n) +
              " training examples; 'job.subset' must be at most " + std::to_string(n - tail)));
        }
        TRY(std::vector<uint32_t> order, data::NestedSubset(n, n, job.subset_seed));
        validation = dataset.train.Select(std::vector<uint32_t>(order.end() - tail, order.end()));
      }
    }
    const int64_t total_steps = std::max<int64_t>(
        1, std::llround(job.train.epochs * static_cast<double>(plan->steps_per_epoch())));

    // ---- Phase 2: model and optimizer.
    TRY_CONFIG(models::ModelConfig model_config, models::LookupModel(job.model));
    model_config.dropout = job.train.dropout;
    model_config.pre_logits = static_cast<int>(job.train.pre_logits);
    torch::manual_seed(job.seed);
    Expected<models::Model> built = models::BuildModel(model_config, dataset.num_classes, resolution);
    if (!built.ok()) return ConfigError(InvalidArgument("field 'job.train.resolution' or 'job.model': " + built.status().message()));
    models::Model model = std::move(built).value();
    model->to(device);  // before the optimiser, which keeps state beside each parameter
    OptimizerConfig optimizer_config;
    TRY_CONFIG(optimizer_config.kind, ParseOptimizer(job.train.optimizer));
    optimizer_config.beta1 = job.train.beta1;
    optimizer_config.beta2 = job.train.beta2;
    optimizer_config.weight_decay = job.train.weight_decay;
    auto optimizer = MakeOptimizer(optimizer_config, model->parameters());
    TRY_CONFIG(const Decay decay, ParseDecay(job.train.lr_decay));
    const Schedule schedule{job.train.lr, job.train.warmup_steps, total_steps, decay, 0.0};

    // ---- Phase 3: checkpoint. Precedence: resume from our newest good checkpoint, else the
    // spec's init_from weights, else the seeded initialisation. Rank 0's state then goes to all.
    TRY(CheckpointStore store,
        CheckpointStore::Open((std::filesystem::path(run.dir) / "checkpoints").string(),
                              static_cast<int>(run.keep_checkpoints)));
    TrainProgress progress;
    progress.seed = static_cast<uint64_t>(job.seed);
    progress.model = job.model;
    progress.schedule = schedule;
    std::vector<std::string> warnings;
    Expected<Checkpoint> checkpoint = store.LoadNewest(&warnings);
    for (const std::string& w : warnings) Log("warning: " + w);
    if (checkpoint.ok()) {
      TRY(TrainProgress saved, ParseProgress(checkpoint->blobs[kStateBlob]));
      if (saved.model != job.model) {
        return ConfigError(InvalidArgument("checkpoint " + checkpoint->path + " is of model '" +
                                           saved.model + "', the job trains '" + job.model + "'"));
      }
      TRY_STATUS(LoadModule(checkpoint->blobs[kModelBlob], *model));
      TRY_STATUS(LoadOptimizer(checkpoint->blobs[kOptimizerBlob], *optimizer));
      model->SetConventions(saved.conventions);
      progress.step = saved.step;
      progress.images_seen = saved.images_seen;
      progress.best_validation = saved.best_validation;
      progress.best_step = saved.best_step;
      Log("resuming from " + checkpoint->path + " at step " + std::to_string(saved.step));
    } else if (checkpoint.status().code() != StatusCode::kNotFound) {
      return OtherFailure(checkpoint.status());
    } else if (!run.init_from.empty()) {
      Status status = models::InitializeFrom(run.init_from, *model);
      if (!status.ok()) return ConfigError(InvalidArgument("field 'run.init_from': " + status.message()));
      Log("initialised from " + run.init_from);
    }
    progress.conventions = model->config().conventions;
    // Every rank must agree on where it starts (a checkpoint directory that is not shared, or
    // one that changed between the ranks' reads, would split them).
    std::vector<double> start = {static_cast<double>(progress.step)};
    TRY_STATUS(comm().AllReduceScalars(&start));
    if (start[0] != static_cast<double>(progress.step) * comm().size()) {
      return OtherFailure(FailedPrecondition(
          "ranks found different checkpoints in " + store.dir() +
          "; the checkpoint directory must be shared by every rank"));
    }
    TRY_STATUS(comm().Broadcast(model->parameters()));
    TRY_STATUS(comm().Broadcast(model->buffers()));

    // ---- Phase 4: reporting (rank 0 only).
    std::unique_ptr<ReportSink> sink;
    HttpSink* http_sink = nullptr;  // owned by `sink`; set when the coordinator gets reports
    if (comm().rank() == 0) {
      std::vector<std::unique_ptr<ReportSink>> sinks;
      TRY(auto jsonl, JsonlFileSink::Open((std::filesystem::path(run.dir) / "report.jsonl").string(),
                                          spec_.job_id));
      sinks.push_back(std::move(jsonl));
      if (run.stdout_report) sinks.push_back(std::make_unique<StreamSink>(stdout));
      if (!run.report_url.empty()) {
        TRY(auto http, HttpSink::Create(run.report_url, run.report_token, spec_.job_id, run.attempt));
        http_sink = http.get();
        sinks.push_back(std::move(http));
      }
      sink = std::make_unique<FanoutSink>(std::move(sinks));
    }
    const double forward_macs = static_cast<double>(
        models::ComputeCost(model->config(), resolution, dataset.num_classes).forward_macs);
    const std::string best_path = (std::filesystem::path(run.dir) / "best.pt").string();
    double validation_flops = 0.0;

    // ---- Phase 5: the training loop. Sizes that ran out of memory before are halved.
    const int64_t rank_batch = job.train.batch_size / comm().size();
    const MemoryLimits limits = ReadMemoryLimits(run);
    int64_t micro_batch = run.micro_batch > 0 ? std::min(run.micro_batch, rank_batch) : rank_batch;
    if (limits.micro_batch > 0 && micro_batch >= limits.micro_batch) {
      micro_batch = Halve(limits.micro_batch);
      if (progress.step < total_steps) {
        Log("an earlier attempt ran out of memory at micro-batch " +
            std::to_string(limits.micro_batch) + "; training with micro-batch " +
            std::to_string(micro_batch) + " (the same global batch, accumulated)");
      }
    }
    int64_t eval_batch = run.eval_batch;
    if (limits.eval_batch > 0 && eval_batch >= limits.eval_batch) {
      eval_batch = Halve(limits.eval_batch);
      Log("an earlier attempt ran out of memory evaluating " + std::to_string(limits.eval_batch) +
          " images at once; evaluating " + std::to_string(eval_batch));
    }
    data::LoaderOptions loader_options;
    loader_options.augment = data::DefaultAugment(dataset, resolution);
    if (job.train.crop_padding) {
      loader_options.augment.crop_padding = static_cast<int>(*job.train.crop_padding);
    }
    if (job.train.flip) loader_options.augment.flip = *job.train.flip;
    loader_options.threads = static_cast<int>(run.loader_threads);
    loader_options.prefetch = std::max(2, loader_options.threads);
    loader_options.max_bad_samples = run.max_bad_samples;
    loader_options.log = [this](const std::string& line) { Log(line); };
    if (sink) TRY_STATUS(sink->EnterPhase({kPhasePretraining, 0, 0, ""}));
    if (progress.step < total_steps) {
      TRY(std::unique_ptr<data::Loader> loader,
          data::Loader::Create(dataset.train, *plan, comm().rank(), progress.step, loader_options));
      LoopOptions loop;
      loop.total_steps = total_steps;
      loop.schedule = schedule;
      loop.clip_norm = job.train.grad_clip_norm;
      loop.label_smoothing = job.train.label_smoothing;
      loop.micro_batch = micro_batch;
      loop.seed = progress.seed;
      loop.metrics_every = run.metrics_every_steps;
      loop.train_flops_per_image = models::TrainFlopsPerImage(static_cast<int64_t>(forward_macs));
      loop.verify_replicas = run.verify_replicas;
      loop.device = {run.precision, run.cuda_graphs};
      LoopHooks hooks;
      hooks.sink = sink.get();
      hooks.stop_requested = &stop_requested;
      hooks.after_step = [&](int64_t steps_done, bool stopping) -> Status {
        // Early stopping: validate on every rank (a collective), keep the best model. Skipped
        // when stopping, so that the checkpoint fits in the grace period.
        if (early_stopping && !stopping &&
            (steps_done % job.train.early_stopping_every == 0 || steps_done == total_steps)) {
          ASSIGN_OR_RETURN(double accuracy,
                           EvaluateAccuracy(*model, comm(), validation, loader_options.augment,
                                            eval_batch, loader_options.threads));
          validation_flops += 2.0 * forward_macs * static_cast<double>(validation.size());
          if (sink) RETURN_IF_ERROR(sink->Metrics({{steps_done, "val_accuracy", accuracy}}));
          if (accuracy > progress.best_validation) {
            progress.best_validation = accuracy;
            progress.best_step = steps_done;
            if (comm().rank() == 0) RETURN_IF_ERROR(models::SaveModel(*model, best_path));
          }
        }
        const bool due = stopping || steps_done == total_steps ||
                         (run.checkpoint_every_steps > 0 &&
                          steps_done % run.checkpoint_every_steps == 0);
        if (!due || comm().rank() != 0) return Status::Ok();
        progress.step = steps_done;
        ASSIGN_OR_RETURN(auto blobs, SnapshotTraining(*model, *optimizer, progress));
        ASSIGN_OR_RETURN(std::string manifest_sha, store.Save(steps_done, blobs));
        return sink->Checkpoint(steps_done, store.PathOf(steps_done), manifest_sha);
      };
      Expected<LoopEnd> end = RunTrainingLoop(*model, *optimizer, comm(), *loader, loop, hooks,
                                              &progress.step, &progress.images_seen);
      if (!end.ok()) {
        if (end.status().code() == StatusCode::kResourceExhausted) {
          return OutOfMemory(end.status(), &MemoryLimits::micro_batch, micro_batch,
                             "run.micro_batch", "train with");
        }
        return OtherFailure(end.status());
      }
      if (*end == LoopEnd::kStopped) {
        TRY_STATUS(comm().Barrier());  // rank 0's checkpoint is on disk before anyone exits
        Log("preempted: checkpoint at step " + std::to_string(progress.step) + " written");
        if (http_sink) {
          // Best effort within the grace period: the checkpoint itself is what resumes the job.
          Status told = http_sink->Flush(std::chrono::seconds(5));
          if (!told.ok()) Log("preempted before reporting: " + told.message());
        }
        return {kExitPreempted, Status::Ok()};
      }
    }

    // ---- Phase 6: evaluations.
    std::vector<ResultRecord> results;
    if (dataset.test.size() > 0) {  // ImageNet-21k and JFT have no test split
      Expected<double> test_accuracy = EvaluateAccuracy(
          *model, comm(), dataset.test, loader_options.augment, eval_batch, loader_options.threads);
      if (!test_accuracy.ok()) {
        if (test_accuracy.status().code() == StatusCode::kResourceExhausted) {
          return OutOfMemory(test_accuracy.status(), &MemoryLimits::eval_batch, eval_batch,
                             "run.eval_batch", "evaluate with");
        }
        return FromStatus(test_accuracy.status());
      }
      results.push_back({"pretrain", job.dataset, 0, -1, "accuracy", *test_accuracy});
    }
    if (comm().rank() == 0) {
      TRY_STATUS(models::SaveModel(*model, (std::filesystem::path(run.dir) / "final.pt").string()));
    }
    if (early_stopping && progress.best_step >= 0) {
      // Sec. 4.3: the transfer results are the best-validated model's. Rank 0 wrote best.pt
      // before the collectives since, so every rank reads the complete file.
      results.push_back(
          {"pretrain", job.dataset, 0, -1, "best_validation_accuracy", progress.best_validation});
      results.push_back(
          {"pretrain", job.dataset, 0, -1, "best_step", static_cast<double>(progress.best_step)});
      TRY_STATUS(models::LoadWeights(best_path, *model));
      Log("evaluating the best-validated model, of step " + std::to_string(progress.best_step));
    }
    EvalEnv env;
    env.comm = &comm();
    env.roots = roots;
    env.eval_batch = eval_batch;
    env.device = {run.precision, run.cuda_graphs};
    env.loader_threads = loader_options.threads;
    env.seed = static_cast<uint64_t>(job.seed);
    env.stop_requested = &stop_requested;
    env.sink = sink.get();
    env.eval_flops =
        2.0 * forward_macs * static_cast<double>(dataset.test.size()) + validation_flops;
    env.dataset = job.dataset;
    env.run_dir = run.dir;
    env.file_prefix = spec_.job_id.substr(0, 12);
    for (auto& evaluator : MakeEvaluators(job, &env)) {
      Expected<std::vector<ResultRecord>> records = evaluator->Run(*model);
      if (!records.ok()) {
        if (records.status().code() == StatusCode::kUnavailable && stop_requested.load()) {
          Log("preempted during " + evaluator->name() + "; it reruns on resume");
          return {kExitPreempted, Status::Ok()};
        }
        if (records.status().code() == StatusCode::kResourceExhausted) {
          return OutOfMemory(records.status(), &MemoryLimits::eval_batch, eval_batch,
                             "run.eval_batch", "evaluate with");
        }
        return FromStatus(records.status());
      }
      results.insert(results.end(), records->begin(), records->end());
    }

    // ---- Phase 7: results and the compute ledger.
    if (sink) {
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      ComputeLedger ledger;
      ledger.images_seen = progress.images_seen;
      ledger.train_flops = models::TrainFlopsPerImage(static_cast<int64_t>(forward_macs)) *
                           static_cast<double>(progress.images_seen);
      ledger.eval_flops = env.eval_flops;
      ledger.device_kind = DeviceKind(device);
      ledger.wall_seconds = wall;
      ledger.device_seconds = wall * comm().size();
      TRY_STATUS(sink->Final(results, ledger));
      // Done means the coordinator has the results: wait for them to arrive (it may be
      // restarting). Failing here retries the job, which resumes from its final checkpoint.
      if (http_sink) TRY_STATUS(http_sink->Flush(std::chrono::seconds(300)));
    }
    return {kExitDone, Status::Ok()};
  }

  // `--inspect`: the inspection views of a finished job (trainer/inspection.h), from its run
  // directory's best.pt (early stopping) or final.pt, written beside them. Reports go to stdout
  // only; the job's state is not touched.
  Failure Inspect(const std::string& spec_path) {
    TRY_CONFIG(spec_, LoadJobSpec(spec_path));
    torch::set_num_threads(static_cast<int>(spec_.run.threads));
    const std::filesystem::path dir(spec_.run.dir);
    std::string path = (dir / "best.pt").string();
    std::error_code error;
    if (spec_.job.train.early_stopping_every == 0 || !std::filesystem::exists(path, error)) {
      path = (dir / "final.pt").string();
    }
    if (!std::filesystem::exists(path, error)) {
      return ConfigError(InvalidArgument("no " + path +
                                         ": the job has not finished pretraining in that run "
                                         "directory"));
    }
    TRY(models::Model model, models::LoadModel(path));
    if (model->name() != spec_.job.model) {
      return ConfigError(InvalidArgument(path + " holds a " + model->name() + ", the job trains " +
                                         spec_.job.model));
    }
    StreamSink sink(stdout);
    EvalEnv env;
    env.comm = &comm();
    env.roots.datasets_dir = spec_.run.datasets_dir;
    env.loader_threads = static_cast<int>(spec_.run.loader_threads);
    env.stop_requested = &stop_requested;
    env.sink = comm().rank() == 0 ? &sink : nullptr;
    env.dataset = spec_.job.dataset;
    env.run_dir = spec_.run.dir;
    env.file_prefix = spec_.job_id.substr(0, 12);
    Log("inspecting " + path);
    Expected<std::vector<ResultRecord>> done = MakeInspectionEvaluator(&env)->Run(*model);
    if (!done.ok()) return FromStatus(done.status());
    return {kExitDone, Status::Ok()};
  }

 private:
  // Out of memory at `size` (a per-rank batch): the next attempt of the job uses half of it,
  // through the run directory's out_of_memory.json; at size 1 nothing smaller is left to try
  // and the job is a configuration error (the model does not fit this device).
  Failure OutOfMemory(const Status& status, int64_t MemoryLimits::*field, int64_t size,
                      const std::string& option, const std::string& verb) {
    if (size <= 1) {
      return ConfigError(InvalidArgument(
          status.message() + "; even " + option + " 1 does not fit: use a smaller model or "
          "resolution, or a device with more memory"));
    }
    MemoryLimits limits = ReadMemoryLimits(spec_.run);
    limits.*field = size;
    const nlohmann::json j = {{"micro_batch", limits.micro_batch},
                              {"eval_batch", limits.eval_batch}};
    Status written = WriteFileAtomically(MemoryLimitsPath(spec_.run), j.dump() + "\n");
    if (!written.ok()) Log("warning: " + written.message());
    return {kExitOutOfMemory,
            ResourceExhausted(status.message() + "; the next attempt will " + verb + " " +
                              option + " " + std::to_string(Halve(size)))};
  }

  void Log(const std::string& line) {
    if (comm().rank() == 0) std::fprintf(stderr, "vitscale-train: %s\n", line.c_str());
  }

  MpiCommunicator& mpi_;
  std::unique_ptr<Communicator> nccl_;
  JobSpec spec_;
};

int Main(int argc, char** argv) {
  static const char kUsage[] =
      "usage: [mpirun -np N] vitscale-train --spec JOB.json [--inspect]\n"
      "Runs one job spec (docs/train-spec.md); with --inspect, only the inspection views of the\n"
      "finished job in the spec's run directory (its final.pt, or best.pt with early stopping).\n"
      "Exit status: 0 done, 75 preempted (resume later), 78 configuration error, 79 out of memory\n"
      "(retried with half the batch), 1 other failure.\n\n";
  CommandLine line = ParseCommandLine(
      argc, argv, "vitscale-train", kUsage,
      {{"--spec", true, "JOB.json", "the job spec to run (required)"},
       {"--inspect", false, "", "draw the finished job's inspection views instead of training"}});
  // A bad command line is the caller's configuration error: retrying it cannot help.
  if (line.exit_code > 0) return kExitConfigError;
  if (line.exit_code == 0) return kExitDone;
  std::string spec_path = line.args.Get("--spec");
  const bool inspect = line.args.Has("--inspect");
  if (spec_path.empty()) {
    std::fprintf(stderr, "vitscale-train: --spec JOB.json is required\n");
    return kExitConfigError;
  }
  std::signal(SIGTERM, OnSigterm);
  Expected<std::unique_ptr<MpiCommunicator>> comm = MpiCommunicator::Create();
  if (!comm.ok()) {
    std::fprintf(stderr, "vitscale-train: %s\n", comm.status().ToString().c_str());
    return kExitFailure;
  }
  Failure result{kExitDone, Status::Ok()};
  {
    Job job(**comm);
    result = inspect ? job.Inspect(spec_path) : job.Run(spec_path);
    if (!result.status.ok()) {
      std::fprintf(stderr, "vitscale-train: rank %d: %s\n", (*comm)->rank(),
                   result.status.ToString().c_str());
      // A failure may be this rank's alone (a spec or dataset missing on its host only, a CUDA
      // error, out of memory) while the others wait in a collective: end every rank now, with
      // this rank's status. mpirun exits with it, so a configuration error stays one (and is
      // not retried).
      if ((*comm)->size() > 1) job.comm().Abort(result.exit_status);
    }
  }
  comm->reset();
  FinalizeMpi();
  return result.exit_status;
}

}  // namespace
}  // namespace vitscale::trainer

int main(int argc, char** argv) { return vitscale::trainer::Main(argc, argv); }
