#include "trainer/train_step.h"

#include <cstdio>
#include <string>

#include "models/torch_compat.h"
#include "trainer/device.h"
#include "trainer/optim.h"

#if VITSCALE_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace vitscale::trainer {
namespace {

// The first line of a LibTorch message (CUDA's out-of-memory text runs to a paragraph).
std::string FirstLine(const char* text) {
  std::string line(text);
  const size_t end = line.find('\n');
  return end == std::string::npos ? line : line.substr(0, end);
}

}  // namespace

struct TrainStep::Graph {
#if VITSCALE_TORCH_CUDA
  at::cuda::CUDAGraph graph;
  torch::Tensor images, labels;  // the captured step reads its batch from these
#endif
};

TrainStep::TrainStep(models::ModelImpl& model, torch::optim::Optimizer& optimizer,
                     Communicator& comm, StepOptions options)
    : model_(model),
      optimizer_(optimizer),
      comm_(comm),
      options_(options),
      device_(DeviceOf(model)),
      bf16_(device_.is_cuda() && options.device.precision != Precision::kFloat32),
      channels_last_(device_.is_cuda() && model.config().family != models::Family::kViT),
      params_(model.parameters()) {
  if (comm_.size() > 1) reducer_ = std::make_unique<GradientReducer>(params_, comm_);
  // The replayed update must read its learning rate and step counts from device memory, which
  // FusedAdamW keeps there; other optimisers run eagerly.
  graphs_allowed_ = VITSCALE_TORCH_CUDA && device_.is_cuda() && options.device.cuda_graphs &&
                    dynamic_cast<FusedAdamW*>(&optimizer_) != nullptr;
}

TrainStep::~TrainStep() {
  // Gradients may live in the graph's memory pool: drop them with it.
  if (graph_) optimizer_.zero_grad();
}

bool TrainStep::replaying() const { return graph_ != nullptr; }

Status TrainStep::OutOfMemory(const c10::Error& error, int64_t rank_batch) const {
  const int64_t micro =
      options_.micro_batch > 0 ? std::min(options_.micro_batch, rank_batch) : rank_batch;
  return ResourceExhausted("out of memory training " + model_.name() + " at " +
                           std::to_string(model_.resolution()) + " px with micro-batch " +
                           std::to_string(micro) + " of this rank's " +
                           std::to_string(rank_batch) + " images on " + DescribeDevice(device_) +
                           ": " + FirstLine(error.what_without_backtrace()));
}

Expected<StepResult> TrainStep::RunOnCpu(const torch::Tensor& images, const torch::Tensor& labels,
                                         double lr) {
  const int64_t rank_batch = images.size(0);
  const int64_t micro = options_.micro_batch > 0 ? options_.micro_batch : rank_batch;
  StepResult result;
  try {
    optimizer_.zero_grad();
    for (int64_t begin = 0; begin < rank_batch; begin += micro) {
      const int64_t count = std::min(micro, rank_batch - begin);
      if (reducer_ && begin + count == rank_batch) reducer_->Arm();
      torch::Tensor logits = model_.Forward(images.narrow(0, begin, count));
      torch::Tensor y = labels.narrow(0, begin, count);
      // Scaled so that the accumulated gradient is the rank batch's mean.
      torch::Tensor loss = SmoothedCrossEntropy(logits, y, options_.label_smoothing) *
                           (static_cast<double>(count) / rank_batch);
      loss.backward();
      result.loss_sum += loss.item<double>();
      result.correct += logits.argmax(1).eq(y).sum().item<double>();
    }
    if (reducer_) {
      RETURN_IF_ERROR(reducer_->Finish());
    } else {
      // A parameter the forward did not reach still gets a (zero) gradient, as with more ranks.
      for (torch::Tensor& p : params_) {
        if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      }
    }
    result.grad_norm = ClipGradGlobalNorm(params_, options_.clip_norm);
    SetLearningRate(optimizer_, lr);
    optimizer_.step();
  } catch (const c10::Error& e) {
    if (models::compat::IsOutOfMemory(e)) return OutOfMemory(e, rank_batch);
    return Internal(std::string("training step: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return Internal(std::string("training step: ") + e.what());
  }
  return result;
}

Status TrainStep::Enqueue(const torch::Tensor& images, const torch::Tensor& labels,
                          bool capturing) {
  const int64_t rank_batch = images.size(0);
  const int64_t micro = options_.micro_batch > 0 ? options_.micro_batch : rank_batch;
  const torch::Tensor input =
      channels_last_ ? images.contiguous(at::MemoryFormat::ChannelsLast) : images;
  const auto scalar = torch::TensorOptions().dtype(torch::kFloat32).device(device_);
  loss_sum_ = torch::zeros({}, scalar);
  correct_ = torch::zeros({}, scalar);
  for (int64_t begin = 0; begin < rank_batch; begin += micro) {
    const int64_t count = std::min(micro, rank_batch - begin);
    if (reducer_ && begin + count == rank_batch) reducer_->Arm();
    torch::Tensor y = labels.narrow(0, begin, count);
    torch::Tensor logits, loss;
    {
      models::compat::CudaAutocastGuard autocast(bf16_);
      logits = model_.Forward(input.narrow(0, begin, count));
      loss = SmoothedCrossEntropy(logits, y, options_.label_smoothing) *
             (static_cast<double>(count) / rank_batch);
    }
    loss.backward();
    torch::NoGradGuard no_grad;
    loss_sum_.add_(loss.detach().to(torch::kFloat32));
    correct_.add_(logits.argmax(1).eq(y).sum().to(torch::kFloat32));
  }
  if (reducer_) {
    RETURN_IF_ERROR(reducer_->Finish());
  } else {
    for (torch::Tensor& p : params_) {
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    }
  }
  grad_norm_ = ClipGradGlobalNormOnDevice(params_, options_.clip_norm);
  if (auto* fused = dynamic_cast<FusedAdamW*>(&optimizer_)) {
    // A capture records the update only; the learning rate is copied in before each replay.
    if (capturing) {
      fused->Apply();
    } else {
      fused->step();
    }
  } else {
    optimizer_.step();
  }
  return Status::Ok();
}

Status TrainStep::Capture(const torch::Tensor& images, const torch::Tensor& labels) {
#if VITSCALE_TORCH_CUDA
  auto graph = std::make_unique<Graph>();
  graph->images =
      images.clone(channels_last_ ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  graph->labels = labels.clone();
  optimizer_.zero_grad();  // the captured backward allocates the gradients in the graph's pool
  static_cast<FusedAdamW&>(optimizer_).UpdateLearningRates();
  // CUDA captures only on a stream other than the default one; it starts after what is queued.
  const c10::cuda::CUDAStream ambient = at::cuda::getCurrentCUDAStream(device_.index());
  const c10::cuda::CUDAStream side = at::cuda::getStreamFromPool(false, device_.index());
  c10::Event queued(c10::DeviceType::CUDA);
  queued.record(ambient);
  queued.block(side);
  Status captured;
  {
    c10::cuda::CUDAStreamGuard on_side(side);
    graph->graph.capture_begin();
    try {
      captured = Enqueue(graph->images, graph->labels, /*capturing=*/true);
      graph->graph.capture_end();
    } catch (const c10::Error& e) {
      try {
        graph->graph.capture_end();  // leaves capture mode so the stream works again
      } catch (const c10::Error&) {
      }
      captured = models::compat::IsOutOfMemory(e)
                     ? OutOfMemory(e, images.size(0))
                     : Internal(FirstLine(e.what_without_backtrace()));
    }
  }
  // Every rank replays, or none does: a graph recorded collectives that must match.
  std::vector<double> failed = {captured.ok() ? 0.0 : 1.0};
  RETURN_IF_ERROR(comm_.AllReduceScalars(&failed));
  if (failed[0] > 0) {
    if (reducer_) reducer_->Reset();
    return captured.ok() ? Unavailable("a peer rank could not capture its step") : captured;
  }
  graph_ = std::move(graph);
  return Status::Ok();
#else
  (void)images, (void)labels;
  return FailedPrecondition("CUDA graphs need a CUDA build of LibTorch");
#endif
}

Expected<StepResult> TrainStep::Run(const torch::Tensor& images, const torch::Tensor& labels,
                                    double lr, const std::function<void()>& while_running) {
  if (!device_.is_cuda()) {
    Expected<StepResult> result = RunOnCpu(images, labels, lr);
    if (while_running) while_running();
    return result;
  }
  const int64_t rank_batch = images.size(0);
  SetLearningRate(optimizer_, lr);
  try {
#if VITSCALE_TORCH_CUDA
    if (!graph_ && graphs_allowed_ && steps_run_ >= 1) {
      // The first step ran eagerly (it initialised cuBLAS, cuDNN and the optimiser state,
      // which a capture may not); capture the second.
      Status captured = Capture(images, labels);
      if (captured.code() == StatusCode::kResourceExhausted) return captured;
      if (!captured.ok()) {
        graphs_allowed_ = false;
        if (comm_.rank() == 0) {
          std::fprintf(stderr, "vitscale-train: warning: CUDA graph capture failed, steps run "
                       "eagerly: %s\n", captured.message().c_str());
        }
      }
    }
    if (graph_) {
      graph_->images.copy_(images);
      graph_->labels.copy_(labels);
      static_cast<FusedAdamW&>(optimizer_).UpdateLearningRates();
      graph_->graph.replay();
    }
#endif
    if (!graph_) {
      optimizer_.zero_grad();
      RETURN_IF_ERROR(Enqueue(images, labels, /*capturing=*/false));
    }
    ++steps_run_;
    if (while_running) while_running();
    // One read-back for all three results; an asynchronous CUDA error surfaces here.
    torch::Tensor host =
        torch::stack({loss_sum_.to(torch::kFloat64), correct_.to(torch::kFloat64), grad_norm_})
            .to(torch::kCPU);
    const double* values = host.data_ptr<double>();
    return StepResult{values[0], values[1], values[2]};
  } catch (const c10::Error& e) {
    if (models::compat::IsOutOfMemory(e)) return OutOfMemory(e, rank_batch);
    return Internal(std::string("training step on ") + device_.str() + ": " +
                    FirstLine(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return Internal(std::string("training step on ") + device_.str() + ": " + e.what());
  }
}

}  // namespace vitscale::trainer
