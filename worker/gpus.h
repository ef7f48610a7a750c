// GPU detection for the agent: which GPUs this host offers, and of which kind (docs/gpu.md).
//
// The agent asks `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits`
// once at start rather than loading NVML (libnvidia-ml) with dlopen: the tool ships with every
// NVIDIA driver that ships NVML, its CSV query output is documented as stable for scripts, it
// needs no NVML structs or symbol versions copied into this code base, and a test can put a
// stand-in `nvidia-smi` on PATH. One process at start is all it costs.
//
// GPUs are numbered as nvidia-smi numbers them (PCI bus order); the agent sets
// CUDA_DEVICE_ORDER=PCI_BUS_ID for its jobs so that CUDA_VISIBLE_DEVICES uses the same numbers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace vitscale::worker {

struct GpuInfo {
  int index = 0;
  std::string name;        // the model, "NVIDIA H200": the GPUs' accelerator kind
  int64_t memory_mib = 0;  // total memory
  bool operator==(const GpuInfo& o) const {
    return index == o.index && name == o.name && memory_mib == o.memory_mib;
  }
};

// The query's output: one "INDEX, NAME, MEMORY" line per GPU. kInvalidArgument naming the line
// for anything else (a driver error printed instead of the table, say).
Expected<std::vector<GpuInfo>> ParseNvidiaSmiGpus(std::string_view text);

// Runs the query with `nvidia_smi` (a path, or a name looked up in PATH). No GPUs when the tool
// is not installed; kUnavailable, with what it printed, when it is there and fails.
Expected<std::vector<GpuInfo>> DetectGpus(const std::string& nvidia_smi = "nvidia-smi");

// What the agent offers: GPUs 0..count-1 of the host, all of one kind.
struct GpuOffer {
  int count = 0;
  std::string kind;  // "" when count is 0
};

// From the agent's flags and what detection found. `gpus_flag` is "auto" (every detected GPU)
// or a count N (GPUs 0..N-1); `kind_flag` names their kind ("" = the detected model). Errors
// (kInvalidArgument) say which flag to pass: a count above what was detected, GPUs of different
// models under "auto" (one agent offers one kind), or GPUs whose kind nothing names.
Expected<GpuOffer> ChooseGpuOffer(const std::string& gpus_flag, const std::string& kind_flag,
                                  const std::vector<GpuInfo>& detected);

}  // namespace vitscale::worker
