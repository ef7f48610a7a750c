// vitscale-gpu-bench: training images/s of the trainer's own step (TrainStep: bf16 autocast,
// fused AdamW, channels-last ResNets, the step replayed as a CUDA graph) on one GPU, on
// synthetic data already on the GPU, so that input is not measured. The recipe is the paper's
// pretraining step: AdamW with weight decay 0.1, global-norm clipping at 1, 1000 classes.
//
//   vitscale-gpu-bench --model ViT-B/16 [--batch 256] [--resolution 224] [--steps 30]
//                      [--warmup 5] [--precision bf16|fp32] [--no-graphs]
//
// Prints one JSON line: impl ("vitscale", or "vitscale-eager" with --no-graphs), model, batch (halved until it fits, from --batch), images_per_sec over
// the timed steps, step_ms, peak_gib (the most GPU memory live tensors held), and whether steps
// replayed a CUDA graph. bench/gpu/run.sh runs it beside timm's eager and compiled models.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "models/zoo.h"
#include "trainer/communicator.h"
#include "trainer/device.h"
#include "trainer/optim.h"
#include "trainer/train_step.h"

namespace vitscale::trainer {
namespace {

struct Options {
  std::string model = "ViT-B/16";
  int64_t batch = 256;
  int resolution = 224;
  int steps = 30;
  int warmup = 5;
  Precision precision = Precision::kBFloat16;
  bool graphs = true;
};

struct Measured {
  double images_per_sec = 0.0;
  double step_ms = 0.0;
  double peak_gib = 0.0;
  bool replayed = false;
};

// kResourceExhausted when `batch` does not fit.
Expected<Measured> Measure(const Options& o, int64_t batch, Communicator& comm,
                           torch::Device device) {
  torch::manual_seed(0);
  ASSIGN_OR_RETURN(models::Model model, models::BuildModel(o.model, 1000, o.resolution));
  model->to(device);
  OptimizerConfig config;
  config.weight_decay = 0.1;
  auto optimizer = MakeOptimizer(config, model->parameters());
  StepOptions options;
  options.clip_norm = 1.0;
  options.device = {o.precision, o.graphs};
  TrainStep step(*model, *optimizer, comm, options);
  torch::Tensor images = torch::randn({batch, 3, o.resolution, o.resolution},
                                      torch::TensorOptions().device(device));
  torch::Tensor labels =
      torch::randint(0, 1000, {batch}, torch::TensorOptions().dtype(torch::kLong).device(device));
  ResetPeakMemory(device);
  for (int i = 0; i < o.warmup; ++i) {
    ASSIGN_OR_RETURN(StepResult result, step.Run(images, labels, 1e-4));
    (void)result;
  }
  Synchronize(device);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < o.steps; ++i) {
    ASSIGN_OR_RETURN(StepResult result, step.Run(images, labels, 1e-4));
    (void)result;
  }
  Synchronize(device);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Measured m;
  m.images_per_sec = static_cast<double>(batch) * o.steps / seconds;
  m.step_ms = 1000.0 * seconds / o.steps;
  m.peak_gib = static_cast<double>(QueryMemory(device).peak_bytes) / (1 << 30);
  m.replayed = step.replaying();
  return m;
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--model") {
      o.model = next();
    } else if (arg == "--batch") {
      o.batch = std::stoll(next());
    } else if (arg == "--resolution") {
      o.resolution = std::stoi(next());
    } else if (arg == "--steps") {
      o.steps = std::stoi(next());
    } else if (arg == "--warmup") {
      o.warmup = std::stoi(next());
    } else if (arg == "--precision") {
      Expected<Precision> p = ParsePrecision(next());
      if (!p.ok()) {
        std::fprintf(stderr, "--precision %s\n", p.status().message().c_str());
        return 2;
      }
      o.precision = *p;
    } else if (arg == "--no-graphs") {
      o.graphs = false;
    } else {
      std::fprintf(stderr, "unknown argument '%s' (see the comment at the top of gpu_bench.cc)\n",
                   arg.c_str());
      return 2;
    }
  }
  if (!GpuAvailable()) {
    std::fprintf(stderr, "vitscale-gpu-bench: no GPU (or a LibTorch without CUDA)\n");
    return 1;
  }
  Expected<std::unique_ptr<MpiCommunicator>> comm = MpiCommunicator::Create();
  if (!comm.ok()) {
    std::fprintf(stderr, "%s\n", comm.status().ToString().c_str());
    return 1;
  }
  const torch::Device device(torch::kCUDA, 0);
  int rc = 1;
  for (int64_t batch = o.batch; batch >= 1; batch /= 2) {
    Expected<Measured> m = Measure(o, batch, **comm, device);
    if (!m.ok() && m.status().code() == StatusCode::kResourceExhausted) {
      std::fprintf(stderr, "vitscale-gpu-bench: %s; halving the batch\n",
                   m.status().message().c_str());
      continue;
    }
    if (!m.ok()) {
      std::fprintf(stderr, "vitscale-gpu-bench: %s\n", m.status().ToString().c_str());
      break;
    }
    std::printf("{\"impl\": \"%s\", \"model\": \"%s\", \"batch\": %lld, \"resolution\": %d, "
                "\"precision\": \"%s\", \"cuda_graph\": %s, \"images_per_sec\": %.1f, "
                "\"step_ms\": %.2f, \"peak_gib\": %.2f, \"device\": \"%s\"}\n",
                o.graphs ? "vitscale" : "vitscale-eager", o.model.c_str(),
                static_cast<long long>(batch), o.resolution,
                PrecisionName(o.precision), m->replayed ? "true" : "false", m->images_per_sec,
                m->step_ms, m->peak_gib, DeviceKind(device).c_str());
    std::fflush(stdout);
    rc = 0;
    break;
  }
  comm->reset();
  FinalizeMpi();
  return rc;
}

}  // namespace
}  // namespace vitscale::trainer

int main(int argc, char** argv) { return vitscale::trainer::Main(argc, argv); }
