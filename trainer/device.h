// Where a rank computes — the CPU, or one GPU of its host — and what the trainer needs to know
// about that device: its kind for the compute ledger, its memory for out-of-memory messages, and
// LibTorch's current CUDA stream for NCCL. Builds against a LibTorch without CUDA compile all of
// it; there every GPU query says "no GPU".
//
// The agent hands a GPU job its devices through CUDA_VISIBLE_DEVICES (one per rank on the host);
// CUDA numbers the visible ones from 0, and rank r of a host takes device r, r being Open MPI's
// local rank (OMPI_COMM_WORLD_LOCAL_RANK; 0 when the trainer runs without mpirun).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "common/status.h"

namespace vitscale::trainer {

// Whether this build's LibTorch has CUDA and a GPU is visible.
bool GpuAvailable();

// The device of this rank: the CPU for gpus_per_rank 0, the local rank's GPU for 1. Errors:
// kInvalidArgument for gpus_per_rank outside {0, 1}, or a GPU job on a build or host without
// GPUs, or fewer visible GPUs than local ranks (the message says which and how many).
Expected<torch::Device> SelectDevice(int64_t gpus_per_rank);

// The device `module`'s parameters live on (the CPU for a module without parameters).
torch::Device DeviceOf(const torch::nn::Module& module);

// "cpu", or the GPU's product name as CUDA reports it ("NVIDIA H200"): the ledger's device kind.
std::string DeviceKind(const torch::Device& device);

// A GPU's memory as LibTorch's allocator sees it; -1 where unknown (the CPU, a build without
// CUDA).
struct DeviceMemory {
  int64_t total_bytes = -1;      // the device's capacity
  int64_t allocated_bytes = -1;  // held by live tensors of this process now
  int64_t peak_bytes = -1;       // the most held by live tensors since the last reset
};
DeviceMemory QueryMemory(const torch::Device& device);
void ResetPeakMemory(const torch::Device& device);
// QueryMemory for messages: "NVIDIA H200, 139.8 GiB, peak 121.0 GiB held by tensors".
std::string DescribeDevice(const torch::Device& device);

// Waits until every kernel queued on `device` has finished (nothing to do on the CPU).
void Synchronize(const torch::Device& device);

// LibTorch's current CUDA stream on `device` (a cudaStream_t), which NCCL work must be ordered
// against; nullptr where this LibTorch has no CUDA.
void* CurrentCudaStream(const torch::Device& device);

// Makes GPU kernels repeat bit for bit (cuDNN and cuBLAS without nondeterministic algorithms,
// ATen's deterministic implementations), at some cost in speed: a resumed run then continues
// the uninterrupted one exactly, as it does on the CPU. Call before the first CUDA work.
void UseDeterministicGpuKernels();

}  // namespace vitscale::trainer
