// The dataset catalog: the one place that knows each dataset name vitscale accepts, with its
// split sizes, class count and image shape. Sweep validation (subset sizes, few-shot shots,
// head sizes for compute) reads it; the trainer maps the same names to files on disk.
// Immutable static data: safe to call from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace vitscale::sweep {

struct DatasetInfo {
  std::string name;        // e.g. "imagenet", "fashion-mnist/0-4"
  int64_t train_size = 0;  // examples in the training split (what subsets are drawn from)
  int64_t test_size = 0;   // examples in the evaluation split; 0 where there is no public one
  int num_classes = 0;
  int image_size = 0;  // native side in pixels; 0 where images vary in size
  int channels = 3;
  int fine_tune_steps = 0;  // the paper's Table 4 fine-tuning steps for this dataset
  bool local = false;       // shipped with Debian packages and read by the CPU trainer
  std::string description;
};

// Every dataset, the paper's first, in a stable order.
const std::vector<DatasetInfo>& Datasets();
std::vector<std::string> DatasetNames();

// Unknown names get an error naming the nearest known dataset.
Expected<DatasetInfo> LookupDataset(std::string_view name);

}  // namespace vitscale::sweep
