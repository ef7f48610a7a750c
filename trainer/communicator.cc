#include "trainer/communicator.h"

#include <mpi.h>
#include <torch/torch.h>

#include <climits>
#include <cstdlib>
#include <string>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace vitscale::trainer {
namespace {

Status MpiError(const char* call, int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return Unavailable(std::string(call) + " failed: " + std::string(text, length) +
                     " (a peer rank may have died; see its output)");
}

Expected<MPI_Datatype> MpiType(const torch::Tensor& tensor) {
  if (!tensor.defined()) return InvalidArgument("communicator: undefined tensor");
  switch (tensor.scalar_type()) {
    case torch::kFloat32:
      return MPI_FLOAT;
    case torch::kFloat64:
      return MPI_DOUBLE;
    default:
      return InvalidArgument(std::string("MpiCommunicator supports float32 and float64, not ") +
                             c10::toString(tensor.scalar_type()));
  }
}

// The tensors of one bucket laid end to end in a fresh contiguous buffer.
torch::Tensor Pack(const std::vector<torch::Tensor>& tensors, const std::vector<size_t>& bucket) {
  std::vector<torch::Tensor> flat;
  flat.reserve(bucket.size());
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

struct MpiCommunicator::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
};

std::vector<std::vector<size_t>> PlanBuckets(const std::vector<torch::Tensor>& tensors,
                                             size_t bucket_bytes) {
  std::vector<std::vector<size_t>> buckets;
  size_t current_bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const size_t bytes = tensors[i].numel() * tensors[i].element_size();
    const bool fits = !buckets.empty() &&
                      tensors[buckets.back().front()].scalar_type() == tensors[i].scalar_type() &&
                      current_bytes + bytes <= bucket_bytes;
    if (!fits) {
      buckets.emplace_back();
      current_bytes = 0;
    }
    buckets.back().push_back(i);
    current_bytes += bytes;
  }
  return buckets;
}

Expected<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Create(size_t bucket_bytes) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    // The training thread alone calls MPI; data loading threads never do.
    int provided = 0;
#if defined(__SANITIZE_ADDRESS__)
    // Open MPI loads and unloads components while it starts and loses a few bytes of theirs;
    // once unloaded, no suppression can name them (see FinalizeMpi). What it allocates here is
    // not ours to check.
    __lsan_disable();
#endif
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
#if defined(__SANITIZE_ADDRESS__)
    __lsan_enable();
#endif
    if (rc != MPI_SUCCESS) return MpiError("MPI_Init_thread", rc);
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return FailedPrecondition("MPI was already finalised in this process");

  auto impl = std::make_unique<Impl>();
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, &impl->comm);
  if (rc != MPI_SUCCESS) return MpiError("MPI_Comm_dup", rc);
  MPI_Comm_set_errhandler(impl->comm, MPI_ERRORS_RETURN);
  int rank = 0, size = 1;
  MPI_Comm_rank(impl->comm, &rank);
  MPI_Comm_size(impl->comm, &size);
  if (bucket_bytes == 0) bucket_bytes = kDefaultBucketBytes;
  return std::unique_ptr<MpiCommunicator>(
      new MpiCommunicator(std::move(impl), rank, size, bucket_bytes));
}

MpiCommunicator::MpiCommunicator(std::unique_ptr<Impl> impl, int rank, int size,
                                 size_t bucket_bytes)
    : impl_(std::move(impl)), rank_(rank), size_(size), bucket_bytes_(bucket_bytes) {}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && impl_->comm != MPI_COMM_NULL) MPI_Comm_free(&impl_->comm);
}

namespace {

// Every tensor must have an MPI type before any rank starts a collective on them.
Status CheckTypes(const std::vector<torch::Tensor>& tensors) {
  for (const torch::Tensor& t : tensors) {
    ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(t));
    (void)type;
  }
  return Status::Ok();
}

// Packs each bucket of `tensors` into one flat buffer in host memory and hands it to
// `collective`, which runs the MPI call on it; then, where `unpack`, copies the result back into
// the tensors. GPU tensors are staged through host memory (NCCL is their fast path).
template <typename Collective>
Status ForEachBucket(const std::vector<torch::Tensor>& tensors, size_t bucket_bytes, bool unpack,
                     Collective collective) {
  for (const std::vector<size_t>& bucket : PlanBuckets(tensors, bucket_bytes)) {
    torch::Tensor buffer = Pack(tensors, bucket).to(torch::kCPU);
    if (buffer.numel() > INT_MAX) return InvalidArgument("tensor too large for one MPI message");
    ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(buffer));
    RETURN_IF_ERROR(collective(buffer, type));
    if (unpack) Unpack(buffer, tensors, bucket);
  }
  return Status::Ok();
}

}  // namespace

Status MpiCommunicator::Broadcast(const std::vector<torch::Tensor>& tensors) {
  RETURN_IF_ERROR(CheckTypes(tensors));
  if (size_ == 1) return Status::Ok();
  return ForEachBucket(tensors, bucket_bytes_, /*unpack=*/rank_ != 0,
                       [&](torch::Tensor& buffer, MPI_Datatype type) -> Status {
                         int rc = MPI_Bcast(buffer.data_ptr(), static_cast<int>(buffer.numel()),
                                            type, 0, impl_->comm);
                         if (rc != MPI_SUCCESS) return MpiError("MPI_Bcast", rc);
                         return Status::Ok();
                       });
}

Status MpiCommunicator::AllReduce(const std::vector<torch::Tensor>& tensors, Reduce reduce) {
  RETURN_IF_ERROR(CheckTypes(tensors));
  if (size_ == 1) return Status::Ok();
  return ForEachBucket(tensors, bucket_bytes_, /*unpack=*/true,
                       [&](torch::Tensor& buffer, MPI_Datatype type) -> Status {
                         int rc = MPI_Allreduce(MPI_IN_PLACE, buffer.data_ptr(),
                                                static_cast<int>(buffer.numel()), type, MPI_SUM,
                                                impl_->comm);
                         if (rc != MPI_SUCCESS) return MpiError("MPI_Allreduce", rc);
                         if (reduce == Reduce::kMean) buffer.div_(static_cast<double>(size_));
                         return Status::Ok();
                       });
}

namespace {

class Completed final : public Communicator::Pending {
 public:
  explicit Completed(Status status) : status_(std::move(status)) {}
  Status Wait() override { return status_; }

 private:
  Status status_;
};

}  // namespace

Expected<std::unique_ptr<Communicator::Pending>> Communicator::StartAllReduce(
    const torch::Tensor& flat, Reduce reduce) {
  return std::unique_ptr<Pending>(new Completed(AllReduce({flat}, reduce)));
}

Status MpiCommunicator::BroadcastBytes(std::string* bytes) {
  if (size_ == 1 || bytes->empty()) return Status::Ok();
  if (bytes->size() > INT_MAX) return InvalidArgument("too many bytes for one MPI message");
  int rc = MPI_Bcast(bytes->data(), static_cast<int>(bytes->size()), MPI_BYTE, 0, impl_->comm);
  if (rc != MPI_SUCCESS) return MpiError("MPI_Bcast", rc);
  return Status::Ok();
}

Status MpiCommunicator::AllReduceScalars(std::vector<double>* values) {
  if (size_ == 1 || values->empty()) return Status::Ok();
  int rc = MPI_Allreduce(MPI_IN_PLACE, values->data(), static_cast<int>(values->size()),
                         MPI_DOUBLE, MPI_SUM, impl_->comm);
  if (rc != MPI_SUCCESS) return MpiError("MPI_Allreduce", rc);
  return Status::Ok();
}

Status MpiCommunicator::Barrier() {
  int rc = MPI_Barrier(impl_->comm);
  if (rc != MPI_SUCCESS) return MpiError("MPI_Barrier", rc);
  return Status::Ok();
}

void MpiCommunicator::Abort(int exit_status) {
  MPI_Abort(impl_->comm, exit_status);
  std::_Exit(exit_status);  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

void FinalizeMpi() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
#if defined(__SANITIZE_ADDRESS__)
  // MPI_Finalize unloads Open MPI's components and leaves behind memory they allocated; a leak
  // check at exit then sees allocations from code no longer mapped, which no suppression can
  // name. So the one check runs here, while they are loaded: memory Open MPI still holds is
  // reachable, what it lost since MPI_Init is named by its library (scripts/lsan.supp), and the
  // rest is ours.
  __lsan_do_leak_check();
#endif
  MPI_Finalize();
}

}  // namespace vitscale::trainer
