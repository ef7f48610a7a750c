// GPU smoke test (ctest -L gpu). For a tiny ViT, ResNet and hybrid: four training steps on the
// GPU through the trainer's own TrainStep (bf16 autocast, fused AdamW, channels-last ResNets,
// the step captured as a CUDA graph and replayed), a checkpoint after the second, a resume from
// it in fresh objects, and the resumed run's parameters bit-identical to the uninterrupted
// run's after step four. The uninterrupted run replays a graph where the resumed one first
// steps eagerly, so this also checks that capture and eager steps compute the same thing.
//
// A plain program rather than a GoogleTest binary: the GPU machines build it without GoogleTest
// (bench/gpu/run.sh). Exit status 0 passed, 1 failed, 77 skipped (no GPU).
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "models/zoo.h"
#include "trainer/communicator.h"
#include "trainer/device.h"
#include "trainer/optim.h"
#include "trainer/train_state.h"
#include "trainer/train_step.h"

namespace vitscale::trainer {
namespace {

int failures = 0;

void Check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// A resolution each model's stride divides.
int Resolution(const std::string& name) { return name == "ViT-Mu/7" ? 28 : 32; }

struct Run {
  models::Model model{nullptr};
  std::unique_ptr<torch::optim::Optimizer> optimizer;
};

Run Build(const std::string& name, torch::Device device) {
  torch::manual_seed(1);
  Expected<models::Model> built = models::BuildModel(name, 10, Resolution(name));
  if (!built.ok()) {
    std::printf("FAIL build %s: %s\n", name.c_str(), built.status().ToString().c_str());
    std::exit(1);
  }
  Run run;
  run.model = std::move(built).value();
  run.model->to(device);
  OptimizerConfig config;
  config.weight_decay = 0.1;
  run.optimizer = MakeOptimizer(config, run.model->parameters());
  return run;
}

// Steps [first, last) of one seeded synthetic stream, through one TrainStep; after step
// `snapshot_at` (if in range) `snapshot` runs. Returns the last loss.
double Train(Run& run, Communicator& comm, int first, int last, torch::Device device,
             bool* replayed, int snapshot_at = -1, const std::function<void()>& snapshot = {}) {
  StepOptions options;
  options.clip_norm = 1.0;
  options.micro_batch = 4;  // two micro-batches per step: accumulation inside the graph too
  TrainStep step(*run.model, *run.optimizer, comm, options);
  double loss = 0.0;
  for (int s = first; s < last; ++s) {
    torch::manual_seed(StepSeed(7, s, 0));
    const int r = run.model->resolution();
    torch::Tensor images = torch::randn({8, 3, r, r}).to(device);
    torch::Tensor labels = torch::randint(0, 10, {8}).to(device);
    Expected<StepResult> result = step.Run(images, labels, 1e-3 * (s + 1));
    if (!result.ok()) {
      Check(false, "step " + std::to_string(s) + ": " + result.status().ToString());
      return 0.0;
    }
    loss = result->loss_sum;
    if (s + 1 == snapshot_at) snapshot();
  }
  *replayed = step.replaying();
  return loss;
}

void SmokeTest(const std::string& name, Communicator& comm, torch::Device device) {
  // Uninterrupted: steps 0..3 through one TrainStep (eager, capture, replay, replay), with the
  // checkpoint's tensor blobs (model.pt, optimizer.pt) written after step 2 as the trainer does.
  Run whole = Build(name, device);
  bool replayed = false;
  Expected<std::string> model_blob = Internal("not written"), optimizer_blob = model_blob;
  const double loss = Train(whole, comm, 0, 4, device, &replayed, 2, [&] {
    model_blob = SerializeModule(*whole.model);
    optimizer_blob = SerializeOptimizer(*whole.optimizer);
  });
  Check(model_blob.ok() && optimizer_blob.ok(), name + ": checkpoint after step 2");
  if (!model_blob.ok() || !optimizer_blob.ok()) return;
  Check(std::isfinite(loss), name + ": finite loss " + std::to_string(loss));
#if VITSCALE_TORCH_CUDA && TORCH_VERSION_MAJOR >= 2
  Check(replayed, name + ": steps replay a captured CUDA graph");
#endif

  // Resumed: fresh model and optimiser (other initial weights), loaded from the checkpoint; a
  // new TrainStep steps 2 eagerly and captures 3.
  Run resumed = Build(name, device);
  torch::manual_seed(99);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : resumed.model->parameters()) p.normal_();
  }
  Check(LoadModule(*model_blob, *resumed.model).ok(), name + ": load model");
  Check(LoadOptimizer(*optimizer_blob, *resumed.optimizer).ok(), name + ": load optimizer");
  Train(resumed, comm, 2, 4, device, &replayed);

  std::vector<torch::Tensor> a = whole.model->parameters(), b = resumed.model->parameters();
  bool identical = a.size() == b.size();
  for (size_t i = 0; identical && i < a.size(); ++i) identical = torch::equal(a[i], b[i]);
  Check(identical, name + ": resumed parameters bit-identical to the uninterrupted run's");
}

}  // namespace
}  // namespace vitscale::trainer

int main() {
  using namespace vitscale;
  using namespace vitscale::trainer;
  if (!GpuAvailable()) {
    std::printf("skipped: no GPU (this LibTorch has CUDA: %s)\n",
                VITSCALE_TORCH_CUDA ? "yes" : "no");
    return 77;
  }
  UseDeterministicGpuKernels();
  Expected<std::unique_ptr<MpiCommunicator>> comm = MpiCommunicator::Create();
  if (!comm.ok()) {
    std::printf("FAIL MPI: %s\n", comm.status().ToString().c_str());
    return 1;
  }
  const torch::Device device(torch::kCUDA, 0);
  std::printf("device: %s\n", DescribeDevice(device).c_str());
  for (const char* name : {"ViT-Mu/7", "R11s", "R11s+ViT-Mu/4"}) SmokeTest(name, **comm, device);
  comm->reset();
  FinalizeMpi();
  std::printf("%d failed\n", failures);
  return failures == 0 ? 0 : 1;
}
