#include "trainer/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <torch/torch.h>

#include <cstring>
#include <string>

#include "trainer/device.h"

namespace vitscale::trainer {
namespace {

// Started all-reduces whose completion events are in flight at once; events are reused in turn
// (waiting on a reused event waits for a later point of the same stream, which is still right).
constexpr size_t kCompletionEvents = 64;

Status CudaError(const std::string& call, cudaError_t code) {
  return Internal(call + " failed: " + cudaGetErrorString(code));
}

Status NcclError(const std::string& call, ncclResult_t code) {
  return Unavailable(call + " failed: " + ncclGetErrorString(code) +
                     " (a peer rank may have died; see its output)");
}

#define CUDA_OK(call)                                   \
  do {                                                  \
    cudaError_t _code = (call);                         \
    if (_code != cudaSuccess) return CudaError(#call, _code); \
  } while (0)
#define NCCL_OK(call)                                   \
  do {                                                  \
    ncclResult_t _code = (call);                        \
    if (_code != ncclSuccess) return NcclError(#call, _code); \
  } while (0)

Expected<ncclDataType_t> NcclType(const torch::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case torch::kFloat32:
      return ncclFloat32;
    case torch::kFloat64:
      return ncclFloat64;
    case torch::kBFloat16:
      return ncclBfloat16;
    default:
      return InvalidArgument(std::string("NcclCommunicator supports float32, float64 and bf16, "
                                         "not ") + c10::toString(tensor.scalar_type()));
  }
}

cudaStream_t CurrentStream(const torch::Device& device) {
  return static_cast<cudaStream_t>(CurrentCudaStream(device));
}

// The tensors of one bucket laid end to end, on their device.
torch::Tensor Pack(const std::vector<torch::Tensor>& tensors, const std::vector<size_t>& bucket) {
  std::vector<torch::Tensor> flat;
  for (size_t i : bucket) flat.push_back(tensors[i].detach().reshape({-1}));
  return torch::cat(flat);
}

void Unpack(const torch::Tensor& buffer, const std::vector<torch::Tensor>& tensors,
            const std::vector<size_t>& bucket) {
  torch::NoGradGuard no_grad;
  int64_t offset = 0;
  for (size_t i : bucket) {
    const int64_t n = tensors[i].numel();
    tensors[i].copy_(buffer.narrow(0, offset, n).view(tensors[i].sizes()));
    offset += n;
  }
}

}  // namespace

struct NcclCommunicator::Impl {
  MpiCommunicator* mpi = nullptr;
  torch::Device device{torch::kCPU};
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;  // StartAllReduce's
  cudaEvent_t queued = nullptr;   // marks how far the current stream had got
  std::vector<cudaEvent_t> done;  // completion of started all-reduces, in turn
  size_t next_done = 0;

  // Splits `tensors` into the rank's GPU tensors and the rest (host tensors go through MPI).
  Status Split(const std::vector<torch::Tensor>& tensors, std::vector<torch::Tensor>* gpu,
               std::vector<torch::Tensor>* host) const {
    for (const torch::Tensor& t : tensors) {
      if (!t.defined()) return InvalidArgument("communicator: undefined tensor");
      if (!t.is_cuda()) {
        host->push_back(t);
        continue;
      }
      if (t.device() != device) {
        return InvalidArgument("tensor on " + t.device().str() + ", this rank's GPU is " +
                               device.str());
      }
      ASSIGN_OR_RETURN(ncclDataType_t type, NcclType(t));
      (void)type;
      gpu->push_back(t);
    }
    return Status::Ok();
  }
};

namespace {

// Runs `collective(buffer, type)` over each packed bucket of `tensors` (on the current stream)
// and unpacks the result where `unpack`.
template <typename Collective>
Status ForEachBucket(const std::vector<torch::Tensor>& tensors, bool unpack,
                     Collective collective) {
  for (const std::vector<size_t>& bucket :
       PlanBuckets(tensors, MpiCommunicator::kDefaultBucketBytes)) {
    torch::Tensor buffer = Pack(tensors, bucket);
    ASSIGN_OR_RETURN(ncclDataType_t type, NcclType(buffer));
    RETURN_IF_ERROR(collective(buffer, type));
    if (unpack) Unpack(buffer, tensors, bucket);
  }
  return Status::Ok();
}

class PendingNccl final : public Communicator::Pending {
 public:
  PendingNccl(cudaEvent_t done, torch::Device device) : done_(done), device_(device) {}
  Status Wait() override {
    CUDA_OK(cudaStreamWaitEvent(CurrentStream(device_), done_, 0));
    return Status::Ok();
  }

 private:
  cudaEvent_t done_;
  torch::Device device_;
};

}  // namespace

Expected<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(MpiCommunicator& mpi,
                                                                     torch::Device device) {
  if (!device.is_cuda() || !GpuAvailable()) {
    return FailedPrecondition("NcclCommunicator needs a GPU and a CUDA build of LibTorch, not " +
                              device.str());
  }
  auto impl = std::make_unique<Impl>();
  impl->device = device;
  impl->mpi = &mpi;
  CUDA_OK(cudaSetDevice(device.index()));
  ncclUniqueId id;
  std::string bytes(sizeof id, '\0');
  if (mpi.rank() == 0) {
    NCCL_OK(ncclGetUniqueId(&id));
    std::memcpy(bytes.data(), &id, sizeof id);
  }
  RETURN_IF_ERROR(mpi.BroadcastBytes(&bytes));
  std::memcpy(&id, bytes.data(), sizeof id);
  NCCL_OK(ncclCommInitRank(&impl->comm, mpi.size(), id, mpi.rank()));
  CUDA_OK(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking));
  CUDA_OK(cudaEventCreateWithFlags(&impl->queued, cudaEventDisableTiming));
  impl->done.resize(kCompletionEvents, nullptr);
  for (cudaEvent_t& event : impl->done) {
    CUDA_OK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  }
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(impl)));
}

NcclCommunicator::NcclCommunicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NcclCommunicator::~NcclCommunicator() {
  if (impl_->comm != nullptr) ncclCommDestroy(impl_->comm);
  for (cudaEvent_t event : impl_->done) {
    if (event != nullptr) cudaEventDestroy(event);
  }
  if (impl_->queued != nullptr) cudaEventDestroy(impl_->queued);
  if (impl_->stream != nullptr) cudaStreamDestroy(impl_->stream);
}

int NcclCommunicator::rank() const { return impl_->mpi->rank(); }
int NcclCommunicator::size() const { return impl_->mpi->size(); }

Status NcclCommunicator::Broadcast(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> gpu, host;
  RETURN_IF_ERROR(impl_->Split(tensors, &gpu, &host));
  if (!host.empty()) RETURN_IF_ERROR(impl_->mpi->Broadcast(host));
  if (gpu.empty()) return Status::Ok();
  return ForEachBucket(gpu, /*unpack=*/rank() != 0,
                       [&](torch::Tensor& buffer, ncclDataType_t type) -> Status {
                         NCCL_OK(ncclBroadcast(buffer.data_ptr(), buffer.data_ptr(),
                                               buffer.numel(), type, 0, impl_->comm,
                                               CurrentStream(impl_->device)));
                         return Status::Ok();
                       });
}

Status NcclCommunicator::AllReduce(const std::vector<torch::Tensor>& tensors, Reduce reduce) {
  std::vector<torch::Tensor> gpu, host;
  RETURN_IF_ERROR(impl_->Split(tensors, &gpu, &host));
  if (!host.empty()) RETURN_IF_ERROR(impl_->mpi->AllReduce(host, reduce));
  if (gpu.empty()) return Status::Ok();
  return ForEachBucket(gpu, /*unpack=*/true,
                       [&](torch::Tensor& buffer, ncclDataType_t type) -> Status {
                         NCCL_OK(ncclAllReduce(buffer.data_ptr(), buffer.data_ptr(),
                                               buffer.numel(), type,
                                               reduce == Reduce::kMean ? ncclAvg : ncclSum,
                                               impl_->comm, CurrentStream(impl_->device)));
                         return Status::Ok();
                       });
}

Expected<std::unique_ptr<Communicator::Pending>> NcclCommunicator::StartAllReduce(
    const torch::Tensor& flat, Reduce reduce) {
  if (!flat.is_cuda()) return Communicator::StartAllReduce(flat, reduce);
  std::vector<torch::Tensor> gpu, host;
  RETURN_IF_ERROR(impl_->Split({flat}, &gpu, &host));
  if (!flat.is_contiguous()) return InvalidArgument("StartAllReduce takes a contiguous tensor");
  ASSIGN_OR_RETURN(ncclDataType_t type, NcclType(flat));
  cudaEvent_t done = impl_->done[impl_->next_done++ % impl_->done.size()];
  // The communication stream starts after the kernels that produced `flat`.
  CUDA_OK(cudaEventRecord(impl_->queued, CurrentStream(impl_->device)));
  CUDA_OK(cudaStreamWaitEvent(impl_->stream, impl_->queued, 0));
  NCCL_OK(ncclAllReduce(flat.data_ptr(), flat.data_ptr(), flat.numel(), type,
                        reduce == Reduce::kMean ? ncclAvg : ncclSum, impl_->comm, impl_->stream));
  CUDA_OK(cudaEventRecord(done, impl_->stream));
  return std::unique_ptr<Pending>(new PendingNccl(done, impl_->device));
}

Status NcclCommunicator::AllReduceScalars(std::vector<double>* values) {
  return impl_->mpi->AllReduceScalars(values);
}

Status NcclCommunicator::Barrier() { return impl_->mpi->Barrier(); }

void NcclCommunicator::Abort(int exit_status) {
  // MPI_Abort ends every rank, also those stuck in an NCCL kernel waiting for this one.
  impl_->mpi->Abort(exit_status);
}

std::string NcclCommunicator::Version() {
  int version = 0;
  if (ncclGetVersion(&version) != ncclSuccess) return "unknown";
  return std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
         std::to_string(version % 100);
}

}  // namespace vitscale::trainer
