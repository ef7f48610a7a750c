// NcclCommunicator on real GPUs (ctest -L gpu), one MPI rank per GPU: bootstrap over MPI,
// Broadcast and AllReduce of GPU tensors (host tensors through MPI), StartAllReduce overlapped
// with the caller's stream, and the GradientReducer's hooks over NCCL, eagerly and captured in a
// CUDA graph. Exit status 0 passed, 1 failed, 77 skipped (fewer GPUs than ranks).
//
// A plain program rather than a GoogleTest binary: the GPU machines build it without GoogleTest.
#include <torch/torch.h>

#include <cstdio>
#include <string>
#include <vector>

#include "trainer/communicator.h"
#include "trainer/device.h"
#include "trainer/gradient_reducer.h"
#include "trainer/nccl_communicator.h"
#include "trainer/optim.h"

#if VITSCALE_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/core/Event.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace vitscale::trainer {
namespace {

int failures = 0;

void Check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// This rank's gradients of a small MLP on its own inputs, averaged over ranks through
// `reducer` (or, without one, by one AllReduce after backward).
std::vector<torch::Tensor> MeanGradients(torch::nn::Sequential& net, Communicator& comm,
                                         GradientReducer* reducer, torch::Device device) {
  torch::manual_seed(5 + comm.rank());
  torch::Tensor x = torch::randn({16, 32}).to(device);
  torch::Tensor y = torch::randint(0, 4, {16}).to(device);
  for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();
  if (reducer != nullptr) reducer->Arm();
  SmoothedCrossEntropy(net->forward(x), y, 0.0).backward();
  if (reducer != nullptr) {
    Check(reducer->Finish().ok(), "reducer finishes");
  } else {
    std::vector<torch::Tensor> grads;
    for (auto& p : net->parameters()) grads.push_back(p.grad());
    Check(comm.AllReduce(grads, Communicator::Reduce::kMean).ok(), "reference all-reduce");
  }
  std::vector<torch::Tensor> grads;
  for (auto& p : net->parameters()) grads.push_back(p.grad().clone());
  return grads;
}

bool AllClose(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!torch::allclose(a[i], b[i], 1e-6, 1e-7)) return false;
  }
  return true;
}

void RunTests(NcclCommunicator& nccl, torch::Device device) {
  const double r = nccl.rank(), n = nccl.size();
  const auto gpu = torch::TensorOptions().device(device);

  std::vector<torch::Tensor> t = {torch::full({1000}, r + 1, gpu),
                                  torch::full({3}, r + 1, gpu.dtype(torch::kFloat64)),
                                  torch::full({2}, r + 1)};  // a host tensor: through MPI
  Check(nccl.Broadcast(t).ok(), "broadcast");
  Check(torch::equal(t[0].cpu(), torch::ones({1000})) &&
            torch::equal(t[1].cpu(), torch::ones({3}, torch::kFloat64)) &&
            torch::equal(t[2], torch::ones({2})),
        "broadcast gives rank 0's values, on the GPU and on the host");

  std::vector<torch::Tensor> sums = {torch::full({5000}, r, gpu), torch::full({7}, r)};
  Check(nccl.AllReduce(sums, Communicator::Reduce::kSum).ok(), "all-reduce sum");
  const double expected = n * (n - 1) / 2;
  Check(torch::equal(sums[0].cpu(), torch::full({5000}, expected)) &&
            torch::equal(sums[1], torch::full({7}, expected)),
        "all-reduce sums over ranks");

  torch::Tensor flat = torch::full({1 << 20}, 2 * r, gpu);
  Expected<std::unique_ptr<Communicator::Pending>> pending =
      nccl.StartAllReduce(flat, Communicator::Reduce::kMean);
  Check(pending.ok() && (*pending)->Wait().ok(), "start and wait");
  Check(torch::allclose(flat.cpu(), torch::full({1 << 20}, n - 1)),
        "started all-reduce averages, ordered before the stream's next kernels");

  torch::manual_seed(3);
  torch::nn::Sequential net(torch::nn::Linear(32, 64), torch::nn::GELU(), torch::nn::Linear(64, 4));
  net->to(device);
  Check(nccl.Broadcast(net->parameters()).ok(), "broadcast parameters");
  const std::vector<torch::Tensor> reference = MeanGradients(net, nccl, nullptr, device);
  GradientReducer reducer(net->parameters(), nccl, /*bucket_bytes=*/4096);
  Check(AllClose(MeanGradients(net, nccl, &reducer, device), reference),
        "reducer hooks over NCCL average like one all-reduce (" +
            std::to_string(reducer.bucket_count()) + " buckets)");

#if VITSCALE_TORCH_CUDA
  // The same pass captured in a CUDA graph (NCCL on its own stream inside the capture), then
  // replayed: the gradients it leaves are the eager pass's.
  torch::manual_seed(5 + nccl.rank());
  torch::Tensor x = torch::randn({16, 32}).to(device);
  torch::Tensor y = torch::randint(0, 4, {16}).to(device);
  for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();
  at::cuda::CUDAGraph graph;
  const c10::cuda::CUDAStream ambient = at::cuda::getCurrentCUDAStream(device.index());
  const c10::cuda::CUDAStream side = at::cuda::getStreamFromPool(false, device.index());
  c10::Event queued(c10::DeviceType::CUDA);
  queued.record(ambient);
  queued.block(side);
  try {
    {
      c10::cuda::CUDAStreamGuard on_side(side);
      graph.capture_begin();
      reducer.Arm();
      SmoothedCrossEntropy(net->forward(x), y, 0.0).backward();
      Status finished = reducer.Finish();
      graph.capture_end();
      Check(finished.ok(), "captured reducer finishes");
    }
    c10::Event captured(c10::DeviceType::CUDA);
    captured.record(side);
    captured.block(ambient);
    graph.replay();
    std::vector<torch::Tensor> replayed;
    for (auto& p : net->parameters()) replayed.push_back(p.grad().clone());
    Check(AllClose(replayed, reference), "replayed graph with NCCL buckets gives the same mean");
  } catch (const c10::Error& e) {
    Check(false, std::string("capture with NCCL: ") + e.what_without_backtrace());
  }
#endif
  Check(nccl.Barrier().ok(), "barrier");
}

}  // namespace
}  // namespace vitscale::trainer

int main() {
  using namespace vitscale;
  using namespace vitscale::trainer;
  Expected<std::unique_ptr<MpiCommunicator>> mpi = MpiCommunicator::Create();
  if (!mpi.ok()) {
    std::printf("FAIL MPI: %s\n", mpi.status().ToString().c_str());
    return 1;
  }
  Expected<torch::Device> device =
      GpuAvailable() ? SelectDevice(1) : Expected<torch::Device>(NotFound("no GPU"));
  // Every rank skips if one has no GPU of its own: NCCL's set-up is collective.
  std::vector<double> missing = {device.ok() ? 0.0 : 1.0};
  if (!(*mpi)->AllReduceScalars(&missing).ok()) return 1;
  if (missing[0] > 0 && device.ok()) {
    device = NotFound("a peer rank has no GPU of its own (one rank per GPU)");
  }
  int result = 77;
  if (!device.ok()) {
    if ((*mpi)->rank() == 0) {
      std::printf("skipped: %s\n", device.status().message().c_str());
    }
  } else {
    Expected<std::unique_ptr<NcclCommunicator>> nccl = NcclCommunicator::Create(**mpi, *device);
    if (!nccl.ok()) {
      std::printf("FAIL NCCL: %s\n", nccl.status().ToString().c_str());
      result = 1;
    } else {
      std::printf("rank %d: NCCL %s on %s\n", (*nccl)->rank(), NcclCommunicator::Version().c_str(),
                  DescribeDevice(*device).c_str());
      RunTests(**nccl, *device);
      nccl->reset();
      std::printf("%d failed\n", failures);
      result = failures == 0 ? 0 : 1;
    }
  }
  mpi->reset();
  FinalizeMpi();
  return result;
}
