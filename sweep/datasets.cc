#include "sweep/datasets.h"

#include "common/names.h"

namespace vitscale::sweep {
namespace {

// Table 4 of the paper fine-tunes ImageNet for 20k steps, CIFAR for 10k, Pets and Flowers for
// 500 and VTAB tasks for 2.5k; the local sets take the VTAB figure as the closest in size.
constexpr int kVtabFineTuneSteps = 2500;

std::vector<DatasetInfo> BuildCatalog() {
  std::vector<DatasetInfo> d;
  d.push_back({"jft-300m", 303'000'000, 0, 18291, 0, 3, 0, false,
               "Google-internal JFT-300M (Sec. 4.1); pretraining only"});
  d.push_back({"imagenet21k", 14'197'122, 0, 21843, 0, 3, 0, false, "ImageNet-21k, full release"});
  d.push_back({"imagenet", 1'281'167, 50'000, 1000, 0, 3, 20000, false,
               "ILSVRC-2012; test = the validation set"});
  d.push_back({"cifar10", 50'000, 10'000, 10, 32, 3, 10000, false, "CIFAR-10"});
  d.push_back({"cifar100", 50'000, 10'000, 100, 32, 3, 10000, false, "CIFAR-100"});
  d.push_back({"pets", 3'680, 3'669, 37, 0, 3, 500, false, "Oxford-IIIT Pets"});
  d.push_back({"flowers", 2'040, 6'149, 102, 0, 3, 500, false,
               "Oxford Flowers-102; train = train + validation"});
  d.push_back({"fashion-mnist", 60'000, 10'000, 10, 28, 1, kVtabFineTuneSteps, true,
               "Fashion-MNIST IDX files under /usr/share/datasets/fashion-mnist"});
  d.push_back({"fashion-mnist/0-4", 30'000, 5'000, 5, 28, 1, kVtabFineTuneSteps, true,
               "Fashion-MNIST classes 0-4 (T-shirt, trouser, pullover, dress, coat)"});
  d.push_back({"fashion-mnist/5-9", 30'000, 5'000, 5, 28, 1, kVtabFineTuneSteps, true,
               "Fashion-MNIST classes 5-9 (sandal, shirt, sneaker, bag, boot), relabelled 0-4"});
  d.push_back({"digits", 1'347, 450, 10, 8, 1, kVtabFineTuneSteps, true,
               "scikit-learn's bundled 8x8 digits, one fixed 1347/450 train/test split"});
  return d;
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
  for (const DatasetInfo& d : Datasets()) {
    if (d.name == name) return d;
  }
  std::string known;
  for (const std::string& n : DatasetNames()) known += (known.empty() ? "" : ", ") + n;
  return NotFound("unknown dataset '" + std::string(name) + "'" + DidYouMean(name, DatasetNames()) +
                  " (known: " + known + ")");
}

}  // namespace vitscale::sweep
