#include "data/loader.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <exception>
#include <utility>

namespace vitscale::data {
namespace {

// Fills examples [begin, end) of a batch; returns the first error in index order.
Status FillRange(const Split& split, const std::vector<uint32_t>& indices,
                 const AugmentOptions& options, bool train, uint64_t seed, uint64_t epoch,
                 size_t begin, size_t end, float* images, int64_t* labels) {
  const size_t example_floats = 3 * static_cast<size_t>(options.resolution) * options.resolution;
  Image scratch;
  for (size_t i = begin; i < end; ++i) {
    const uint32_t index = indices[i];
    if (index >= split.size()) {
      return InvalidArgument("example index " + std::to_string(index) +
                             " is outside the split of " + std::to_string(split.size()));
    }
    ASSIGN_OR_RETURN(ImageView view, split.Get(index, &scratch));
    if (view.channels != 1 && view.channels != 3) {
      return Corruption(split.path(index) + ": " + std::to_string(view.channels) +
                        " channels; images need 1 (gray) or 3 (RGB)");
    }
    const uint64_t key = train ? AugmentKey(seed, epoch, index) : 0;
    AugmentInto(view, options, train, key, images + i * example_floats);
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
  options.prefetch = std::max(options.prefetch, options.threads);
  return std::unique_ptr<Loader>(
      new Loader(std::move(split), std::move(plan), rank, first_step, std::move(options)));
}

Loader::Loader(Split split, BatchPlan plan, int rank, size_t first_step, LoaderOptions options)
    : split_(std::move(split)),
      plan_(std::move(plan)),
      rank_(rank),
      options_(std::move(options)),
      consumer_step_(first_step),
      produce_step_(first_step) {
  for (int i = 0; i < options_.threads; ++i) workers_.emplace_back([this] { Work(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void Loader::Work() {
  while (true) {
    size_t step;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // Bounded: at most `prefetch` steps beyond the consumer are in flight or waiting.
      work_.wait(lock, [this] {
        return stopping_ || produce_step_ < consumer_step_ + static_cast<size_t>(options_.prefetch);
      });
      if (stopping_) return;
      step = produce_step_++;
    }
    Expected<Batch> batch =
        MakeBatch(split_, plan_.RankSlice(step, rank_), options_.augment, options_.train,
                  plan_.seed(), plan_.epoch_of(step), /*threads=*/1);
    if (batch.ok()) batch->step = step;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.emplace(step, std::move(batch));
    }
    ready_.notify_all();
  }
}

Expected<Batch> Loader::Next() {
  std::unique_lock<std::mutex> lock(mutex_);
  ready_.wait(lock, [this] { return done_.count(consumer_step_) > 0; });
  auto it = done_.find(consumer_step_);
  Expected<Batch> batch = std::move(it->second);
  done_.erase(it);
  ++consumer_step_;
  lock.unlock();
  work_.notify_all();
  return batch;
}

}  // namespace vitscale::data
