#include "trainer/training.h"

#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>

#include "common/sha256.h"
#include "models/torch_compat.h"
#include "trainer/device.h"
#include "trainer/train_state.h"

namespace vitscale::trainer {
namespace {

using Clock = std::chrono::steady_clock;

// Runs `fn` and converts LibTorch's exceptions (shape errors, allocation failures) into a Status.
template <typename Fn>
auto CatchTorch(const std::string& what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const c10::Error& e) {
    if (models::compat::IsOutOfMemory(e)) {
      return ResourceExhausted(what + " ran out of memory: " +
                               e.what_without_backtrace());
    }
    return Internal(what + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return Internal(what + ": " + e.what());
  }
}

// Names an evaluation pass in errors: what, the model, the images per forward and the device.
std::string EvaluationName(const models::ModelImpl& model, const char* what, size_t images,
                           const torch::Device& device) {
  return std::string(what) + " " + model.name() + " with " + std::to_string(images) +
         " images per forward on " + DescribeDevice(device);
}

// 20-bit pieces of a digest: sums and sums of squares of them over ranks stay exact in doubles.
void DigestPieces(uint64_t digest, double pieces[3]) {
  for (int i = 0; i < 3; ++i) pieces[i] = static_cast<double>((digest >> (20 * i)) & 0xfffff);
}

Status CheckReplicas(const torch::nn::Module& model, Communicator& comm, int64_t step) {
  double pieces[3];
  DigestPieces(ParameterDigest(model), pieces);
  std::vector<double> sums;
  for (double p : pieces) {
    sums.push_back(p);
    sums.push_back(p * p);
  }
  RETURN_IF_ERROR(comm.AllReduceScalars(&sums));
  const double n = comm.size();
  for (int i = 0; i < 3; ++i) {
    // Equal values iff the variance over ranks is zero: n * sum(x^2) == sum(x)^2.
    if (n * sums[2 * i + 1] != sums[2 * i] * sums[2 * i]) {
      return Internal("rank replicas diverged after step " + std::to_string(step) +
                      ": parameters differ between ranks");
    }
  }
  return Status::Ok();
}

// The loader's batches on the training device. On a GPU the next batch is pinned and copied on a
// stream of its own while the current step computes; the step's stream waits for that copy
// only when it takes the batch. On the CPU batches pass straight through.
class DeviceFeeder {
 public:
  DeviceFeeder(data::Loader& loader, torch::Device device) : loader_(loader), device_(device) {
    if (device_.is_cuda()) {
      c10::impl::VirtualGuardImpl guard(device_.type());
      copy_stream_ = guard.getStreamFromGlobalPool(device_);
    }
  }

  // The next step's batch, on the device; its errors (a corrupt file) are the step's.
  Expected<data::Batch> Next() {
    if (!device_.is_cuda()) return loader_.Next();
    if (!staged_) Prefetch();
    Expected<data::Batch> batch = std::move(*staged_);
    staged_.reset();
    if (batch.ok()) copied_->block(c10::impl::VirtualGuardImpl(device_.type()).getStream(device_));
    return batch;
  }

  // Takes the following batch from the loader and starts its copy (GPU only).
  void Prefetch() {
    if (!device_.is_cuda() || staged_) return;
    Expected<data::Batch> batch = loader_.Next();
    if (batch.ok()) {
      // The copies land in memory allocated on the step's stream, so that the allocator orders
      // its reuse after the step's kernels; the copy stream first waits for that point.
      const c10::Stream compute = c10::impl::VirtualGuardImpl(device_.type()).getStream(device_);
      torch::Tensor images = torch::empty_like(batch->images, batch->images.options().device(device_));
      torch::Tensor labels = torch::empty_like(batch->labels, batch->labels.options().device(device_));
      c10::Event allocated(device_.type());
      allocated.record(compute);
      allocated.block(*copy_stream_);
      {
        c10::StreamGuard on_copy_stream(*copy_stream_);
        images.copy_(Pinned(batch->images), /*non_blocking=*/true);
        labels.copy_(Pinned(batch->labels), /*non_blocking=*/true);
      }
      copied_.emplace(device_.type());
      copied_->record(*copy_stream_);
      batch->images = images;
      batch->labels = labels;
    }
    staged_ = std::move(batch);
  }

 private:
  // Page-locked host memory, which the copy engine reads while the host goes on.
  static torch::Tensor Pinned(const torch::Tensor& host) {
    return host.is_pinned() ? host : host.pin_memory();
  }

  data::Loader& loader_;
  const torch::Device device_;
  std::optional<c10::Stream> copy_stream_;
  std::optional<Expected<data::Batch>> staged_;
  std::optional<c10::Event> copied_;
};

}  // namespace

uint64_t ParameterDigest(const torch::nn::Module& module) {
  std::string bytes;
  for (const torch::Tensor& p : module.parameters()) {
    torch::Tensor c = p.detach().to(torch::kCPU).contiguous();
    bytes.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  }
  const std::string hex = Sha256Hex(bytes).substr(0, 15);  // 60 bits
  return std::stoull(hex, nullptr, 16);
}

Expected<LoopEnd> RunTrainingLoop(models::ModelImpl& model, torch::optim::Optimizer& optimizer,
                                  Communicator& comm, data::Loader& loader,
                                  const LoopOptions& options, const LoopHooks& hooks,
                                  int64_t* step, int64_t* images_seen) {
  model.train();
  StepOptions step_options;
  step_options.clip_norm = options.clip_norm;
  step_options.label_smoothing = options.label_smoothing;
  step_options.micro_batch = options.micro_batch;
  step_options.device = options.device;
  TrainStep train_step(model, optimizer, comm, step_options);
  DeviceFeeder feeder(loader, DeviceOf(model));
  auto window_start = Clock::now();
  int64_t window_images = 0;
  while (*step < options.total_steps) {
    ASSIGN_OR_RETURN(data::Batch batch, feeder.Next());
    if (static_cast<int64_t>(batch.step) != *step) {
      return Internal("loader returned step " + std::to_string(batch.step) + " for step " +
                      std::to_string(*step));
    }
    torch::manual_seed(StepSeed(options.seed, *step, comm.rank()));
    const int64_t rank_batch = batch.images.size(0);
    const double lr = LearningRate(options.schedule, *step);
    const bool more = *step + 1 < options.total_steps;
    ASSIGN_OR_RETURN(StepResult result,
                     train_step.Run(batch.images, batch.labels, lr, [&] {
                       if (more) feeder.Prefetch();
                     }));
    const double loss_sum = result.loss_sum, correct = result.correct;
    const double grad_norm = result.grad_norm;
    ++*step;
    const int64_t global_batch = rank_batch * comm.size();
    *images_seen += global_batch;
    window_images += global_batch;

    const bool stop_here = hooks.stop_requested != nullptr && hooks.stop_requested->load();
    std::vector<double> sums = {loss_sum, correct, stop_here ? 1.0 : 0.0};
    RETURN_IF_ERROR(comm.AllReduceScalars(&sums));
    const bool stopping = sums[2] > 0;
    if (!std::isfinite(sums[0])) {
      return Internal("training diverged: loss is " + std::to_string(sums[0]) + " at step " +
                      std::to_string(*step) + " (lower the learning rate or clip gradients)");
    }
    if (options.verify_replicas) RETURN_IF_ERROR(CheckReplicas(model, comm, *step));

    const bool last = *step == options.total_steps;
    if (hooks.sink != nullptr && (*step % options.metrics_every == 0 || last || stopping)) {
      const double seconds =
          std::chrono::duration<double>(Clock::now() - window_start).count();
      const std::string& p = options.metric_prefix;
      std::vector<MetricPoint> points = {
          {*step, p + "loss", sums[0] / comm.size()},
          {*step, p + "train_accuracy", sums[1] / global_batch},
          {*step, p + "lr", lr},
          {*step, p + "grad_norm", grad_norm},
          {*step, p + "images_per_sec", seconds > 0 ? window_images / seconds : 0.0},
          {*step, p + "images_seen", static_cast<double>(*images_seen)},
          {*step, p + "train_flops", options.train_flops_per_image * *images_seen},
      };
      RETURN_IF_ERROR(hooks.sink->Metrics(points));
      window_start = Clock::now();
      window_images = 0;
    }
    if (hooks.after_step) RETURN_IF_ERROR(hooks.after_step(*step, stopping));
    if (stopping && !last) return LoopEnd::kStopped;
  }
  return LoopEnd::kFinished;
}

namespace {

// This rank's contiguous share [begin, end) of n items.
std::pair<size_t, size_t> Shard(size_t n, const Communicator& comm) {
  return {n * comm.rank() / comm.size(), n * (comm.rank() + 1) / comm.size()};
}

}  // namespace

Expected<double> EvaluateAccuracy(models::ModelImpl& model, Communicator& comm,
                                  const data::Split& split, const data::AugmentOptions& augment,
                                  int64_t batch, int threads) {
  model.eval();
  const torch::Device device = DeviceOf(model);
  auto [begin, end] = Shard(split.size(), comm);
  double correct = 0.0;
  for (size_t i = begin; i < end; i += batch) {
    std::vector<uint32_t> indices;
    for (size_t j = i; j < std::min(end, i + batch); ++j) indices.push_back(j);
    ASSIGN_OR_RETURN(data::Batch b, data::MakeBatch(split, indices, augment, false, 0, 0, threads));
    RETURN_IF_ERROR(CatchTorch(EvaluationName(model, "evaluating", indices.size(), device),
                               [&]() -> Status {
      torch::NoGradGuard no_grad;
      torch::Tensor predicted = model.Forward(b.images.to(device)).argmax(1);
      correct += predicted.eq(b.labels.to(device)).sum().item<double>();
      return Status::Ok();
    }));
  }
  std::vector<double> sums = {correct};
  RETURN_IF_ERROR(comm.AllReduceScalars(&sums));
  model.train();
  return split.size() == 0 ? 0.0 : sums[0] / split.size();
}

Expected<torch::Tensor> ExtractFeatures(models::ModelImpl& model, Communicator& comm,
                                        const data::Split& split,
                                        const std::vector<uint32_t>& indices,
                                        const data::AugmentOptions& augment, int64_t batch,
                                        int threads) {
  model.eval();
  const torch::Device device = DeviceOf(model);
  torch::Tensor features = torch::zeros({static_cast<int64_t>(indices.size()), model.FeatureDim()});
  auto [begin, end] = Shard(indices.size(), comm);
  for (size_t i = begin; i < end; i += batch) {
    const size_t stop = std::min(end, i + batch);
    std::vector<uint32_t> chunk(indices.begin() + i, indices.begin() + stop);
    ASSIGN_OR_RETURN(data::Batch b, data::MakeBatch(split, chunk, augment, false, 0, 0, threads));
    RETURN_IF_ERROR(CatchTorch(EvaluationName(model, "extracting features of", chunk.size(), device),
                               [&]() -> Status {
      torch::NoGradGuard no_grad;
      features.narrow(0, i, stop - i).copy_(model.Features(b.images.to(device)));
      return Status::Ok();
    }));
  }
  RETURN_IF_ERROR(comm.AllReduce({features}, Communicator::Reduce::kSum));
  model.train();
  return features;
}

}  // namespace vitscale::trainer
