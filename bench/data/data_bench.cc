// vitscale-data-bench: the input pipeline's speed on a packed dataset (bench/data/run.sh).
//   --mode loader: the trainer's Loader (Inception random-resized crop + flip at --resolution,
//                  normalised, into its batch buffers) with --threads threads; images/s.
//   --mode read:   every sample's encoded bytes read from the shards through the index, in a
//                  seeded random order, on one thread; samples/s and MB/s.
// Prints one JSON line.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "data/datasets.h"
#include "data/loader.h"
#include "data/order.h"

namespace {

using Clock = std::chrono::steady_clock;
using vitscale::Expected;
namespace data = vitscale::data;

struct Options {
  std::string shards;
  std::string mode = "loader";
  int threads = 1;
  int batch = 64;
  int batches = 60;
  int resolution = 224;
};

int Usage() {
  std::fprintf(stderr,
               "usage: vitscale-data-bench --shards DIR [--mode loader|read] [--threads N] "
               "[--batch B] [--batches K] [--resolution R]\n");
  return 2;
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// CPU seconds of every thread of this process: the cost that other load on the machine does
// not inflate the way it inflates wall time.
double CpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + t.tv_nsec * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return Usage();
    const std::string value = argv[++i];
    if (arg == "--shards")
      o.shards = value;
    else if (arg == "--mode")
      o.mode = value;
    else if (arg == "--threads")
      o.threads = std::atoi(value.c_str());
    else if (arg == "--batch")
      o.batch = std::atoi(value.c_str());
    else if (arg == "--batches")
      o.batches = std::atoi(value.c_str());
    else if (arg == "--resolution")
      o.resolution = std::atoi(value.c_str());
    else
      return Usage();
  }
  if (o.shards.empty() || (o.mode != "loader" && o.mode != "read")) return Usage();
  Expected<data::Dataset> dataset = data::LoadDataset("shards:" + o.shards);
  if (!dataset.ok()) {
    std::fprintf(stderr, "vitscale-data-bench: %s\n", dataset.status().ToString().c_str());
    return 1;
  }
  const data::Split& split = dataset->train;
  nlohmann::json out = {{"side", "vitscale"}, {"mode", o.mode}, {"threads", o.threads}};

  if (o.mode == "read") {
    std::vector<uint32_t> order = data::SeededPermutation(split.size(), 1);
    std::string bytes;
    double total = 0;
    const auto start = Clock::now();
    for (uint32_t i : order) {
      vitscale::Status read = split.ReadEncoded(i, &bytes);
      if (!read.ok()) {
        std::fprintf(stderr, "vitscale-data-bench: %s\n", read.ToString().c_str());
        return 1;
      }
      total += static_cast<double>(bytes.size());
    }
    const double seconds = Seconds(start);
    out["samples"] = split.size();
    out["seconds"] = seconds;
    out["samples_per_sec"] = split.size() / seconds;
    out["mb_per_sec"] = total / 1e6 / seconds;
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }

  Expected<std::vector<uint32_t>> subset = data::NestedSubset(split.size(), 0, 1);
  Expected<data::BatchPlan> plan = data::BatchPlan::Create(*subset, o.batch, 1, 1);
  if (!plan.ok()) {
    std::fprintf(stderr, "vitscale-data-bench: %s\n", plan.status().ToString().c_str());
    return 1;
  }
  data::LoaderOptions options;
  options.augment = data::DefaultAugment(*dataset, o.resolution);
  options.augment.mean = {0.485f, 0.456f, 0.406f};
  options.augment.std = {0.229f, 0.224f, 0.225f};
  options.threads = o.threads;
  options.prefetch = 2;
  auto loader = data::Loader::Create(split, *plan, 0, 0, options);
  if (!loader.ok()) {
    std::fprintf(stderr, "vitscale-data-bench: %s\n", loader.status().ToString().c_str());
    return 1;
  }
  // One warm-up batch, as the torchvision side: threads started, first batches in flight.
  if (!(*loader)->Next().ok()) return 1;
  const auto start = Clock::now();
  const double cpu_start = CpuSeconds();
  int64_t images = 0;
  for (int b = 0; b < o.batches; ++b) {
    Expected<data::Batch> batch = (*loader)->Next();
    if (!batch.ok()) {
      std::fprintf(stderr, "vitscale-data-bench: %s\n", batch.status().ToString().c_str());
      return 1;
    }
    images += batch->images.size(0);
  }
  const double seconds = Seconds(start);
  const double cpu_seconds = CpuSeconds() - cpu_start;
  out["cpu_seconds"] = cpu_seconds;
  out["images_per_cpu_sec"] = images / cpu_seconds;
  out["resize"] =
      options.augment.resize == data::ResizeMode::kInceptionCrop ? "inception-crop" : "other";
  out["images"] = images;
  out["seconds"] = seconds;
  out["images_per_sec"] = images / seconds;
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
