#include "trainer/device.h"

#include <torch/cuda.h>

#include <cstdio>
#include <cstdlib>

#if VITSCALE_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#endif

namespace vitscale::trainer {
namespace {

std::string GiB(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GiB", static_cast<double>(bytes) / (1 << 30));
  return text;
}

}  // namespace

bool GpuAvailable() {
#if VITSCALE_TORCH_CUDA
  return torch::cuda::is_available();
#else
  return false;
#endif
}

Expected<torch::Device> SelectDevice(int64_t gpus_per_rank) {
  if (gpus_per_rank == 0) return torch::Device(torch::kCPU);
  if (gpus_per_rank != 1) {
    return InvalidArgument("field 'run.gpus_per_rank' is " + std::to_string(gpus_per_rank) +
                           "; a rank drives 0 (CPU) or 1 GPU (use more ranks for more GPUs)");
  }
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string shown = visible ? std::string("CUDA_VISIBLE_DEVICES=") + visible
                                    : std::string("CUDA_VISIBLE_DEVICES unset");
  if (!GpuAvailable()) {
#if VITSCALE_TORCH_CUDA
    return InvalidArgument("field 'run.gpus_per_rank' asks for a GPU, but CUDA sees none on this "
                           "host (" + shown + ")");
#else
    return InvalidArgument("field 'run.gpus_per_rank' asks for a GPU, but this vitscale-train is "
                           "built against a LibTorch without CUDA (docs/gpu.md)");
#endif
  }
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  const int local_rank = local ? std::atoi(local) : 0;
  const int count = static_cast<int>(torch::cuda::device_count());
  if (local_rank < 0 || local_rank >= count) {
    return InvalidArgument("local rank " + std::to_string(local_rank) + " needs GPU " +
                           std::to_string(local_rank) + ", but this host shows " +
                           std::to_string(count) + " (" + shown +
                           "): start at most one rank per visible GPU");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
}

torch::Device DeviceOf(const torch::nn::Module& module) {
  for (const torch::Tensor& p : module.parameters()) return p.device();
  return torch::Device(torch::kCPU);
}

std::string DeviceKind(const torch::Device& device) {
  if (!device.is_cuda()) return "cpu";
#if VITSCALE_TORCH_CUDA
  return at::cuda::getDeviceProperties(device.index())->name;
#else
  return "cuda";
#endif
}

DeviceMemory QueryMemory(const torch::Device& device) {
  DeviceMemory memory;
#if VITSCALE_TORCH_CUDA
  if (device.is_cuda()) {
    memory.total_bytes =
        static_cast<int64_t>(at::cuda::getDeviceProperties(device.index())->totalGlobalMem);
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    memory.allocated_bytes = stats.allocated_bytes[0].current;  // [0]: all pools together
    memory.peak_bytes = stats.allocated_bytes[0].peak;
  }
#else
  (void)device;
#endif
  return memory;
}

void ResetPeakMemory(const torch::Device& device) {
#if VITSCALE_TORCH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
#else
  (void)device;
#endif
}

std::string DescribeDevice(const torch::Device& device) {
  if (!device.is_cuda()) return "cpu";
  const DeviceMemory memory = QueryMemory(device);
  std::string text = device.str() + " (" + DeviceKind(device);
  if (memory.total_bytes >= 0) text += ", " + GiB(memory.total_bytes);
  if (memory.peak_bytes >= 0) text += ", peak " + GiB(memory.peak_bytes) + " held by tensors";
  return text + ")";
}

void Synchronize(const torch::Device& device) {
#if VITSCALE_TORCH_CUDA
  if (device.is_cuda()) c10::cuda::device_synchronize();
#else
  (void)device;
#endif
}

void* CurrentCudaStream(const torch::Device& device) {
#if VITSCALE_TORCH_CUDA
  if (device.is_cuda()) return at::cuda::getCurrentCUDAStream(device.index()).stream();
#else
  (void)device;
#endif
  return nullptr;
}

void UseDeterministicGpuKernels() {
  // cuBLAS reads this when it creates its first handle: fixed workspaces, fixed reductions.
  setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  at::globalContext().setDeterministicCuDNN(true);
  at::globalContext().setBenchmarkCuDNN(false);
  // Warn-only: an op without a deterministic GPU kernel (e.g. max-pool backward) still runs;
  // ATen names it in a warning.
  at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/true);
}

}  // namespace vitscale::trainer
