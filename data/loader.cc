#include "data/loader.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <exception>
#include <utility>

#include "data/batch_memory.h"

namespace vitscale::data {
namespace {

// Per-thread buffers reused from one example to the next.
struct Scratch {
  std::string bytes;
  Image image;
  DecodeScratch decode;
};

// Writes example `index` of `split` to `out` with augmentation key `key`.
Status FillExample(const Split& split, uint32_t index, const AugmentOptions& options, bool train,
                   uint64_t key, float* out, Scratch* scratch) {
  if (index >= split.size()) {
    return InvalidArgument("example index " + std::to_string(index) + " is outside the split of " +
                           std::to_string(split.size()));
  }
  if (split.dense()) {
    ASSIGN_OR_RETURN(ImageView view, split.Get(index, &scratch->image));
    AugmentInto(view, options, train, key, out);
    return Status::Ok();
  }
  RETURN_IF_ERROR(split.ReadEncoded(index, &scratch->bytes));
  return DecodeAugmentInto(scratch->bytes, split.source(index), options, train, key, out,
                           &scratch->decode);
}

// Fills examples [begin, end) of a batch; returns the first error in index order.
Status FillRange(const Split& split, const std::vector<uint32_t>& indices,
                 const AugmentOptions& options, bool train, uint64_t seed, uint64_t epoch,
                 size_t begin, size_t end, float* images, int64_t* labels) {
  const size_t example_floats = 3 * static_cast<size_t>(options.resolution) * options.resolution;
  Scratch scratch;
  for (size_t i = begin; i < end; ++i) {
    const uint32_t index = indices[i];
    const uint64_t key = train ? AugmentKey(seed, epoch, index) : 0;
    RETURN_IF_ERROR(
        FillExample(split, index, options, train, key, images + i * example_floats, &scratch));
    labels[i] = split.label(index);
  }
  return Status::Ok();
}

}  // namespace

Expected<Batch> MakeBatch(const Split& split, const std::vector<uint32_t>& indices,
                          const AugmentOptions& options, bool train, uint64_t seed, uint64_t epoch,
                          int threads) {
  RETURN_IF_ERROR(ValidateAugmentOptions(options));
  const int64_t n = static_cast<int64_t>(indices.size());
  const int64_t r = options.resolution;
  Batch batch;
  try {
    batch.images = at::empty({n, 3, r, r}, at::kFloat);
    batch.labels = at::empty({n}, at::kLong);
  } catch (const std::exception& e) {
    return IOError("cannot allocate a batch of " + std::to_string(n) + " images at " +
                   std::to_string(r) + "x" + std::to_string(r) + ": " + e.what());
  }
  float* images = batch.images.data_ptr<float>();
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  const size_t count = indices.size();
  const size_t workers =
      std::clamp<size_t>(static_cast<size_t>(std::max(threads, 1)), 1, std::max<size_t>(count, 1));
  if (workers == 1) {
    RETURN_IF_ERROR(
        FillRange(split, indices, options, train, seed, epoch, 0, count, images, labels));
    return batch;
  }
  std::vector<Status> statuses(workers);
  std::vector<std::thread> pool;
  for (size_t w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      size_t begin = count * w / workers, end = count * (w + 1) / workers;
      statuses[w] =
          FillRange(split, indices, options, train, seed, epoch, begin, end, images, labels);
    });
  }
  for (std::thread& t : pool) t.join();
  for (const Status& status : statuses) RETURN_IF_ERROR(status);
  return batch;
}

Expected<Batch> WholeSplit(const Split& split, const AugmentOptions& options, int threads) {
  std::vector<uint32_t> all(split.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint32_t>(i);
  return MakeBatch(split, all, options, /*train=*/false, 0, 0, threads);
}

// The batch buffers and the lock over the loader's state. Shared with the tensors handed out:
// a buffer goes back on the free list when the last tensor using it is freed, which may be
// after the loader is gone. `keep` buffers are kept for reuse; a consumer that holds more
// batches than that gets buffers allocated for them, and freed again when it lets them go.
struct Loader::Buffers {
  std::mutex mutex;
  std::condition_variable work;    // a chunk or a step is available, or stop
  std::condition_variable ready;   // a batch was finished
  std::vector<at::Tensor> images;  // by slot; undefined once freed; guarded by mutex
  std::vector<int> free;           // slots ready for reuse; guarded by mutex
  size_t keep = 0;
  std::vector<int64_t> sizes;  // [B, 3, R, R]

  // REQUIRES: mutex held. Throws what at::empty throws.
  int Acquire() {
    if (!free.empty()) {
      const int slot = free.back();
      free.pop_back();
      return slot;
    }
    images.push_back(AllocateBatchMemory(sizes, at::kFloat));
    return static_cast<int>(images.size()) - 1;
  }
  void Release(int slot) {
    std::lock_guard<std::mutex> lock(mutex);
    if (free.size() < keep) {
      free.push_back(slot);
    } else {
      images[slot] = at::Tensor();
    }
  }
};

Expected<std::unique_ptr<Loader>> Loader::Create(Split split, BatchPlan plan, int rank,
                                                 size_t first_step, LoaderOptions options) {
  RETURN_IF_ERROR(ValidateAugmentOptions(options.augment));
  if (rank < 0 || rank >= plan.world_size()) {
    return InvalidArgument("rank " + std::to_string(rank) + " is outside the world of " +
                           std::to_string(plan.world_size()) + " ranks");
  }
  if (options.threads < 1) {
    return InvalidArgument("loader threads must be >= 1, not " + std::to_string(options.threads));
  }
  if (options.prefetch < 1) {
    return InvalidArgument("loader prefetch must be >= 1, not " + std::to_string(options.prefetch));
  }
  if (options.max_bad_samples < 0) {
    return InvalidArgument("max_bad_samples must be >= 0");
  }
  auto buffers = std::make_shared<Buffers>();
  const int64_t b = static_cast<int64_t>(plan.per_rank_batch());
  const int64_t r = options.augment.resolution;
  buffers->keep = static_cast<size_t>(options.prefetch) + 2;
  buffers->sizes = {b, 3, r, r};
  try {
    for (size_t i = 0; i < buffers->keep; ++i) {
      buffers->images.push_back(AllocateBatchMemory(buffers->sizes, at::kFloat));
      buffers->free.push_back(static_cast<int>(i));
    }
  } catch (const std::exception& e) {
    return IOError("cannot allocate " + std::to_string(options.prefetch + 2) +
                   " batch buffers of " + std::to_string(b) + " images at " + std::to_string(r) +
                   "x" + std::to_string(r) + " (lower the prefetch or the batch): " + e.what());
  }
  return std::unique_ptr<Loader>(new Loader(std::move(split), std::move(plan), rank, first_step,
                                            std::move(options), std::move(buffers)));
}

Loader::Loader(Split split, BatchPlan plan, int rank, size_t first_step, LoaderOptions options,
               std::shared_ptr<Buffers> buffers)
    : split_(std::move(split)),
      plan_(std::move(plan)),
      rank_(rank),
      options_(std::move(options)),
      // A few chunks per thread and batch keep every thread busy on the oldest batch.
      chunk_size_(std::max<size_t>(1, plan_.per_rank_batch() / (4 * options_.threads))),
      buffers_(std::move(buffers)),
      consumer_step_(first_step),
      produce_step_(first_step) {
  for (int i = 0; i < options_.threads; ++i) workers_.emplace_back([this] { Work(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(buffers_->mutex);
    stopping_ = true;
  }
  buffers_->work.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

Status Loader::FillChunk(const InFlight& job, size_t begin, size_t end, float* images,
                         int64_t* labels, std::vector<BadSample>* bad) const {
  const AugmentOptions& augment = options_.augment;
  const size_t example_floats = 3 * static_cast<size_t>(augment.resolution) * augment.resolution;
  const uint64_t epoch = plan_.epoch_of(job.step);
  const size_t n = job.indices.size();
  thread_local Scratch scratch;
  for (size_t i = begin; i < end; ++i) {
    float* out = images + i * example_floats;
    const uint32_t index = job.indices[i];
    const uint64_t key = options_.train ? AugmentKey(plan_.seed(), epoch, index) : 0;
    Status status = FillExample(split_, index, augment, options_.train, key, out, &scratch);
    if (status.ok()) {
      labels[i] = split_.label(index);
      continue;
    }
    if (options_.max_bad_samples == 0) return status;
    bad->push_back({index, status.message()});
    // The next good example of the batch stands in, with a crop of its own: which one depends
    // only on the batch, never on the threads.
    bool replaced = false;
    for (size_t k = 1; k < n && !replaced; ++k) {
      const uint32_t other = job.indices[(i + k) % n];
      const uint64_t other_key =
          HashValues({AugmentKey(plan_.seed(), epoch, other), static_cast<uint64_t>(i)});
      if (FillExample(split_, other, augment, options_.train, other_key, out, &scratch).ok()) {
        labels[i] = split_.label(other);
        replaced = true;
      }
    }
    if (!replaced) {
      return Corruption("no example of step " + std::to_string(job.step) +
                        "'s batch could be read; the first: " + status.message());
    }
  }
  return Status::Ok();
}

void Loader::Work() {
  std::unique_lock<std::mutex> lock(buffers_->mutex);
  while (true) {
    auto open_job = [this] {
      for (InFlight& job : in_flight_) {
        if (job.next_chunk < job.chunks) return &job;
      }
      return static_cast<InFlight*>(nullptr);
    };
    auto may_start = [this] {
      // Bounded: at most `prefetch` steps beyond the consumer are in flight or waiting.
      return produce_step_ < consumer_step_ + static_cast<size_t>(options_.prefetch);
    };
    buffers_->work.wait(lock, [&] { return stopping_ || open_job() != nullptr || may_start(); });
    if (stopping_) return;
    InFlight* job = open_job();
    if (job == nullptr) {
      InFlight started;
      started.step = produce_step_++;
      try {
        started.buffer = buffers_->Acquire();
      } catch (const std::exception& e) {
        done_.emplace(started.step, Finished{IOError(std::string("cannot allocate a batch "
                                                                 "buffer: ") +
                                                     e.what()),
                                             {}});
        buffers_->ready.notify_all();
        continue;
      }
      started.indices = plan_.RankSlice(started.step, rank_);
      started.labels = at::empty({static_cast<int64_t>(started.indices.size())}, at::kLong);
      started.chunks = (started.indices.size() + chunk_size_ - 1) / chunk_size_;
      started.chunk_status.resize(started.chunks);
      in_flight_.push_back(std::move(started));
      job = &in_flight_.back();
      buffers_->work.notify_all();  // its other chunks are open to the other threads
    }
    const size_t chunk = job->next_chunk++;
    const size_t begin = chunk * chunk_size_;
    const size_t end = std::min(job->indices.size(), begin + chunk_size_);
    float* images = buffers_->images[job->buffer].data_ptr<float>();
    int64_t* labels = job->labels.data_ptr<int64_t>();
    const size_t step = job->step;
    std::vector<BadSample> bad;
    lock.unlock();
    // `job` stays valid: only the thread that finishes its last chunk removes it.
    Status status = FillChunk(*job, begin, end, images, labels, &bad);
    lock.lock();
    auto it = std::find_if(in_flight_.begin(), in_flight_.end(),
                           [step](const InFlight& j) { return j.step == step; });
    it->chunk_status[chunk] = std::move(status);
    it->bad.insert(it->bad.end(), bad.begin(), bad.end());
    if (++it->chunks_done < it->chunks) continue;

    Finished finished{Internal("unset"), {}};
    Status failed;
    for (const Status& s : it->chunk_status) {
      if (!s.ok()) {
        failed = s;
        break;
      }
    }
    if (!failed.ok()) {
      buffers_->free.push_back(it->buffer);  // keep may be exceeded by one: reused next
      finished.batch = failed;
    } else {
      std::sort(it->bad.begin(), it->bad.end(),
                [](const BadSample& a, const BadSample& b) { return a.index < b.index; });
      finished.bad = std::move(it->bad);
      Batch batch;
      batch.step = step;
      const int64_t n = static_cast<int64_t>(it->indices.size());
      const int64_t r = options_.augment.resolution;
      std::shared_ptr<Buffers> buffers = buffers_;
      const int buffer = it->buffer;
      batch.images = at::from_blob(
          images, {n, 3, r, r}, [buffers, buffer](void*) { buffers->Release(buffer); },
          at::TensorOptions().dtype(at::kFloat));
      batch.labels = std::move(it->labels);
      finished.batch = std::move(batch);
    }
    in_flight_.erase(it);
    done_.emplace(step, std::move(finished));
    buffers_->ready.notify_all();
    buffers_->work.notify_all();
  }
}

Expected<Batch> Loader::Next() {
  std::unique_lock<std::mutex> lock(buffers_->mutex);
  buffers_->ready.wait(lock, [this] { return done_.count(consumer_step_) > 0; });
  auto it = done_.find(consumer_step_);
  Finished finished = std::move(it->second);
  done_.erase(it);
  ++consumer_step_;
  lock.unlock();
  buffers_->work.notify_all();
  // Counted here, in step order, so which step fails does not depend on the threads.
  for (const BadSample& bad : finished.bad) {
    if (!bad_seen_.insert(bad.index).second) continue;
    bad_list_.push_back(bad.message);
    if (options_.log) {
      options_.log("skipped a bad sample (" + std::to_string(bad_seen_.size()) + " of at most " +
                   std::to_string(options_.max_bad_samples) + "): " + bad.message);
    }
  }
  if (static_cast<int64_t>(bad_seen_.size()) > options_.max_bad_samples &&
      options_.max_bad_samples > 0) {
    std::string list;
    for (const std::string& line : bad_list_) list += "\n  " + line;
    return Corruption(std::to_string(bad_seen_.size()) +
                      " samples could not be read, more than run.max_bad_samples (" +
                      std::to_string(options_.max_bad_samples) + "); fix or remove them:" + list);
  }
  return std::move(finished.batch);
}

}  // namespace vitscale::data
