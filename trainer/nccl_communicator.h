// NcclCommunicator: the Communicator of GPU ranks. Tensors on the rank's GPU go through NCCL;
// host tensors and scalars (loss sums, stop flags, gathered evaluation features) through the
// MpiCommunicator it wraps, which also bootstraps NCCL: rank 0's ncclUniqueId travels to the
// others by MPI_Bcast. One NCCL rank per MPI rank, each on its own GPU (NCCL refuses two ranks
// on one device).
//
// Ordering: Broadcast and AllReduce run on LibTorch's current stream, so they follow the
// kernels that produced their tensors and precede those that read them; the host does not wait.
// StartAllReduce runs on a communication stream of its own, after what the current stream has
// queued, so a gradient bucket is reduced while backward computes the next layers; Wait() makes
// the current stream wait for it. All of it may be captured in a CUDA graph.
//
// Built with -DVITSCALE_WITH_NCCL=ON (docs/gpu.md); a build whose LibTorch has no CUDA compiles
// and links it, and Create refuses to run.
#pragma once

#include <torch/types.h>

#include <memory>
#include <vector>

#include "common/status.h"
#include "trainer/communicator.h"

namespace vitscale::trainer {

class NcclCommunicator final : public Communicator {
 public:
  // Every rank calls this together (it is collective over `mpi`, which must outlive the
  // result). `device` is the rank's GPU.
  static Expected<std::unique_ptr<NcclCommunicator>> Create(MpiCommunicator& mpi,
                                                            torch::Device device);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override;
  int size() const override;
  Status Broadcast(const std::vector<torch::Tensor>& tensors) override;
  Status AllReduce(const std::vector<torch::Tensor>& tensors, Reduce reduce) override;
  Expected<std::unique_ptr<Pending>> StartAllReduce(const torch::Tensor& flat,
                                                    Reduce reduce) override;
  Status AllReduceScalars(std::vector<double>* values) override;
  Status Barrier() override;
  [[noreturn]] void Abort(int exit_status) override;

  // The NCCL version this binary runs with, e.g. "2.27.7".
  static std::string Version();

 private:
  struct Impl;
  explicit NcclCommunicator(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace vitscale::trainer
