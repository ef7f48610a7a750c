#include "trainer/training.h"

#include <chrono>
#include <cmath>
#include <cstring>

#include "common/sha256.h"
#include "trainer/train_state.h"

namespace vitscale::trainer {
namespace {

using Clock = std::chrono::steady_clock;

// Runs `fn` and converts LibTorch's exceptions (shape errors, allocation failures) into a Status.
template <typename Fn>
auto CatchTorch(const char* what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const c10::Error& e) {
    return Internal(std::string(what) + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return Internal(std::string(what) + ": " + e.what());
  }
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

}  // namespace

uint64_t ParameterDigest(const torch::nn::Module& module) {
  std::string bytes;
  for (const torch::Tensor& p : module.parameters()) {
    torch::Tensor c = p.detach().contiguous();
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
  std::vector<torch::Tensor> params = model.parameters();
  auto window_start = Clock::now();
  int64_t window_images = 0;
  while (*step < options.total_steps) {
    ASSIGN_OR_RETURN(data::Batch batch, loader.Next());
    if (static_cast<int64_t>(batch.step) != *step) {
      return Internal("loader returned step " + std::to_string(batch.step) + " for step " +
                      std::to_string(*step));
    }
    torch::manual_seed(StepSeed(options.seed, *step, comm.rank()));
    const int64_t rank_batch = batch.images.size(0);
    const int64_t micro = options.micro_batch > 0 ? options.micro_batch : rank_batch;
    double loss_sum = 0.0, correct = 0.0;
    Status computed = CatchTorch("training step", [&]() -> Status {
      optimizer.zero_grad();
      for (int64_t begin = 0; begin < rank_batch; begin += micro) {
        const int64_t count = std::min(micro, rank_batch - begin);
        torch::Tensor logits = model.Forward(batch.images.narrow(0, begin, count));
        torch::Tensor labels = batch.labels.narrow(0, begin, count);
        // Scaled so that the accumulated gradient is the rank batch's mean.
        torch::Tensor loss = SmoothedCrossEntropy(logits, labels, options.label_smoothing) *
                             (static_cast<double>(count) / rank_batch);
        loss.backward();
        loss_sum += loss.item<double>();
        correct += logits.argmax(1).eq(labels).sum().item<double>();
      }
      // A parameter the forward did not reach still takes part in the all-reduce.
      for (torch::Tensor& p : params) {
        if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      }
      return Status::Ok();
    });
    RETURN_IF_ERROR(computed);
    std::vector<torch::Tensor> grads;
    grads.reserve(params.size());
    for (torch::Tensor& p : params) grads.push_back(p.grad());
    RETURN_IF_ERROR(comm.AllReduce(grads, Communicator::Reduce::kMean));
    const double grad_norm = ClipGradGlobalNorm(params, options.clip_norm);
    const double lr = LearningRate(options.schedule, *step);
    SetLearningRate(optimizer, lr);
    RETURN_IF_ERROR(CatchTorch("optimizer step", [&]() -> Status {
      optimizer.step();
      return Status::Ok();
    }));
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
  auto [begin, end] = Shard(split.size(), comm);
  double correct = 0.0;
  for (size_t i = begin; i < end; i += batch) {
    std::vector<uint32_t> indices;
    for (size_t j = i; j < std::min(end, i + batch); ++j) indices.push_back(j);
    ASSIGN_OR_RETURN(data::Batch b, data::MakeBatch(split, indices, augment, false, 0, 0, threads));
    RETURN_IF_ERROR(CatchTorch("evaluation", [&]() -> Status {
      torch::NoGradGuard no_grad;
      correct += model.Forward(b.images).argmax(1).eq(b.labels).sum().item<double>();
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
  torch::Tensor features = torch::zeros({static_cast<int64_t>(indices.size()), model.FeatureDim()});
  auto [begin, end] = Shard(indices.size(), comm);
  for (size_t i = begin; i < end; i += batch) {
    const size_t stop = std::min(end, i + batch);
    std::vector<uint32_t> chunk(indices.begin() + i, indices.begin() + stop);
    ASSIGN_OR_RETURN(data::Batch b, data::MakeBatch(split, chunk, augment, false, 0, 0, threads));
    RETURN_IF_ERROR(CatchTorch("feature extraction", [&]() -> Status {
      torch::NoGradGuard no_grad;
      features.narrow(0, i, stop - i).copy_(model.Features(b.images));
      return Status::Ok();
    }));
  }
  RETURN_IF_ERROR(comm.AllReduce({features}, Communicator::Reduce::kSum));
  model.train();
  return features;
}

}  // namespace vitscale::trainer
