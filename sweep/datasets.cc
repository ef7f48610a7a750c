#include "sweep/datasets.h"

#include "common/names.h"
#include "data/shard_format.h"

namespace vitscale::sweep {
namespace {

// Table 4 of the paper fine-tunes ImageNet for 20k steps, CIFAR for 10k, Pets and Flowers for
// 500 and VTAB tasks for 2.5k; the local sets take the VTAB figure as the closest in size.
constexpr int kVtabFineTuneSteps = 2500;

std::vector<DatasetInfo> BuildCatalog() {
  using L = DatasetLayout;
  std::vector<DatasetInfo> d;
  d.push_back({"jft-300m", 303'000'000, 0, 18291, 0, 3, 0, false,
               "Google-internal JFT-300M (Sec. 4.1); pretraining only", L::kPackedOnly, "jft-300m",
               "a packed dataset (manifest.json and its shards) made from your copy of JFT with "
               "`vitscale data pack`; JFT is not public"});
  d.push_back({"imagenet21k", 14'197'122, 0, 21843, 0, 3, 0, false, "ImageNet-21k, full release",
               L::kImageFolders, "imagenet21k",
               "train/<wnid>/*.JPEG: the fall 2011 release's per-synset folders, 21843 of them"});
  d.push_back({"imagenet", 1'281'167, 50'000, 1000, 0, 3, 20000, false,
               "ILSVRC-2012; test = the validation set", L::kImageFolders, "imagenet",
               "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (the validation images sorted into "
               "their 1000 class folders)"});
  d.push_back({"cifar10", 50'000, 10'000, 10, 32, 3, 10000, false, "CIFAR-10", L::kCifar10Binary,
               "cifar10",
               "the binary version's data_batch_1.bin .. data_batch_5.bin and test_batch.bin"});
  d.push_back({"cifar100", 50'000, 10'000, 100, 32, 3, 10000, false, "CIFAR-100",
               L::kCifar100Binary, "cifar100", "the binary version's train.bin and test.bin"});
  d.push_back({"pets", 3'680, 3'669, 37, 0, 3, 500, false, "Oxford-IIIT Pets", L::kPetsAnnotations,
               "pets",
               "images/<Breed>_<n>.jpg and annotations/trainval.txt, annotations/test.txt as "
               "released"});
  d.push_back({"flowers", 2'040, 6'149, 102, 0, 3, 500, false,
               "Oxford Flowers-102; train = train + validation", L::kFlowersMat, "flowers",
               "jpg/image_NNNNN.jpg, imagelabels.mat and setid.mat as released"});
  const std::string fashion_files =
      "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (Debian: apt install "
      "dataset-fashion-mnist)";
  d.push_back({"fashion-mnist", 60'000, 10'000, 10, 28, 1, kVtabFineTuneSteps, true,
               "Fashion-MNIST IDX files under /usr/share/datasets/fashion-mnist",
               L::kFashionMnistIdx, "fashion-mnist", fashion_files});
  d.push_back({"fashion-mnist/0-4", 30'000, 5'000, 5, 28, 1, kVtabFineTuneSteps, true,
               "Fashion-MNIST classes 0-4 (T-shirt, trouser, pullover, dress, coat)",
               L::kFashionMnistIdx, "fashion-mnist", fashion_files});
  d.push_back({"fashion-mnist/5-9", 30'000, 5'000, 5, 28, 1, kVtabFineTuneSteps, true,
               "Fashion-MNIST classes 5-9 (sandal, shirt, sneaker, bag, boot), relabelled 0-4",
               L::kFashionMnistIdx, "fashion-mnist", fashion_files});
  d.push_back({"digits", 1'347, 450, 10, 8, 1, kVtabFineTuneSteps, true,
               "scikit-learn's bundled 8x8 digits, one fixed 1347/450 train/test split",
               L::kDigitsCsv, "", "digits.csv.gz (Debian: apt install python3-sklearn)"});
  return d;
}

Expected<DatasetInfo> FromManifest(const std::string& reference, const std::string& dir) {
  ASSIGN_OR_RETURN(data::Manifest manifest, data::ReadManifest(dir));
  DatasetInfo info;
  info.name = reference;
  info.train_size = manifest.train.samples;
  info.test_size = manifest.test.samples;
  info.num_classes = manifest.num_classes;
  info.image_size = manifest.height == manifest.width ? manifest.height : 0;
  info.channels = manifest.channels > 0 ? manifest.channels : 3;
  info.fine_tune_steps = 0;  // no paper figure: a fine_tune entry on it must set 'steps'
  info.local = true;
  info.description = "packed dataset at " + dir + " (from " + manifest.source + ")";
  info.layout = DatasetLayout::kPackedOnly;
  info.directory = dir;
  info.expected_files = "manifest.json and its shards";
  return info;
}

}  // namespace

const std::vector<DatasetInfo>& Datasets() {
  static const std::vector<DatasetInfo> catalog = BuildCatalog();
  return catalog;
}

std::vector<std::string> DatasetNames() {
  std::vector<std::string> names;
  for (const DatasetInfo& d : Datasets()) names.push_back(d.name);
  return names;
}

Expected<DatasetInfo> LookupDataset(std::string_view name) {
  constexpr std::string_view kShards = "shards:";
  if (name.substr(0, kShards.size()) == kShards) {
    const std::string dir(name.substr(kShards.size()));
    if (dir.empty()) return InvalidArgument("'shards:' needs the packed dataset's directory");
    Expected<DatasetInfo> info = FromManifest(std::string(name), dir);
    if (!info.ok()) {
      return InvalidArgument("dataset '" + std::string(name) + "': " + info.status().message());
    }
    return info;
  }
  for (const DatasetInfo& d : Datasets()) {
    if (d.name == name) return d;
  }
  std::string known;
  for (const std::string& n : DatasetNames()) known += (known.empty() ? "" : ", ") + n;
  return NotFound("unknown dataset '" + std::string(name) + "'" + DidYouMean(name, DatasetNames()) +
                  " (known: " + known + ", or shards:<dir> for a packed dataset)");
}

}  // namespace vitscale::sweep
