// The dataset catalog: the one place that declares each dataset vitscale accepts by name — its
// split sizes, class count, image shape, where its files live under the datasets directory and
// in which layout. Sweep validation (subset sizes, few-shot shots, head sizes for compute)
// reads it, and so does the loader (data/datasets.h), which maps the same names to files.
// A packed dataset (docs/data.md) can also be named by path, "shards:<dir>": its manifest
// gives the sizes. Immutable static data apart from that file read: safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace vitscale::sweep {

// How a catalog dataset's files are laid out under <datasets dir>/<directory>/ when it is not
// packed (a packed copy, with its manifest.json there, always takes precedence).
enum class DatasetLayout {
  kFashionMnistIdx,  // {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
  kDigitsCsv,        // scikit-learn's digits.csv.gz (its own path, not under the directory)
  kCifar10Binary,    // data_batch_{1..5}.bin, test_batch.bin
  kCifar100Binary,   // train.bin, test.bin
  kImageFolders,     // train/<class>/*.{jpg,jpeg,png}, val/<class>/... (ImageNet's layout)
  kPetsAnnotations,  // images/*.jpg, annotations/{trainval,test}.txt (the Oxford-IIIT release)
  kFlowersMat,       // jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat (the Oxford release)
  kPackedOnly,       // only a packed dataset (JFT: user-supplied shards)
};

struct DatasetInfo {
  std::string name;        // e.g. "imagenet", "fashion-mnist/0-4", "shards:/data/jft"
  int64_t train_size = 0;  // examples in the training split (what subsets are drawn from)
  int64_t test_size = 0;   // examples in the evaluation split; 0 where there is no public one
  int num_classes = 0;
  int image_size = 0;  // native side in pixels; 0 where images vary in size
  int channels = 3;
  int fine_tune_steps = 0;  // the paper's Table 4 fine-tuning steps for this dataset
  bool local = false;       // shipped with Debian packages and read by the CPU trainer
  std::string description;
  DatasetLayout layout = DatasetLayout::kPackedOnly;
  // Under the datasets directory (data::DataRoots); a class range ("fashion-mnist/0-4") shares
  // its base set's. For "shards:<dir>", the directory itself.
  std::string directory;
  // What that directory must hold, in words, for the error when it is absent.
  std::string expected_files;
};

// Every catalog dataset, the paper's first, in a stable order.
const std::vector<DatasetInfo>& Datasets();
std::vector<std::string> DatasetNames();

// A catalog name, or "shards:<dir>" (reads <dir>/manifest.json). Unknown names get an error
// naming the nearest known dataset.
Expected<DatasetInfo> LookupDataset(std::string_view name);

}  // namespace vitscale::sweep
