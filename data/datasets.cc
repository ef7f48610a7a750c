#include "data/datasets.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <utility>

#include "common/names.h"
#include "data/order.h"
#include "data/readers.h"

namespace vitscale::data {
namespace {

namespace fs = std::filesystem;

// The digits split is fixed for all time: changing this seed changes every digits result.
constexpr uint64_t kDigitsSplitSeed = 1797;

std::vector<std::string> Numbered(int n) {
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) names.push_back(std::to_string(i));
  return names;
}

// Per-channel mean and std of pixel/255 over a dense split (gray: repeated 3 times).
void ComputeStatistics(const Split& split, Dataset* dataset) {
  const int channels = split.channels();
  const size_t pixels = static_cast<size_t>(split.height()) * split.width();
  std::array<double, 3> sum = {0, 0, 0}, sum_sq = {0, 0, 0};
  Image unused;
  for (size_t i = 0; i < split.size(); ++i) {
    Expected<ImageView> view = split.Get(i, &unused);  // dense: never fails
    const uint8_t* p = view->pixels;
    std::array<uint64_t, 3> s = {0, 0, 0}, sq = {0, 0, 0};
    for (size_t j = 0; j < pixels; ++j) {
      for (int c = 0; c < channels; ++c) {
        uint64_t v = p[j * channels + c];
        s[c] += v;
        sq[c] += v * v;
      }
    }
    for (int c = 0; c < channels; ++c) {
      sum[c] += static_cast<double>(s[c]);
      sum_sq[c] += static_cast<double>(sq[c]);
    }
  }
  const double n = static_cast<double>(split.size() * pixels);
  for (int c = 0; c < 3; ++c) {
    int source = channels == 1 ? 0 : c;
    double mean = sum[source] / n;
    double var = std::max(0.0, sum_sq[source] / n - mean * mean);
    dataset->mean[c] = static_cast<float>(mean / 255.0);
    // A constant image set would divide by zero; 1 leaves it centred and unscaled.
    dataset->std[c] = var > 0 ? static_cast<float>(std::sqrt(var) / 255.0) : 1.f;
  }
}

Dataset FromDenseSplits(std::string reference, Split train, Split test,
                        std::vector<std::string> class_names) {
  Dataset dataset;
  dataset.reference = std::move(reference);
  dataset.num_classes = train.num_classes();
  dataset.class_names = std::move(class_names);
  dataset.height = train.height();
  dataset.width = train.width();
  dataset.channels = train.channels();
  ComputeStatistics(train, &dataset);
  dataset.train = std::move(train);
  dataset.test = std::move(test);
  return dataset;
}

// The plain file if present, else the .gz one; errors name both.
Expected<std::string> FindFile(const std::string& dir, const std::string& name) {
  std::error_code error;
  for (const std::string& candidate : {name + ".gz", name}) {
    std::string path = (fs::path(dir) / candidate).string();
    if (fs::exists(path, error)) return path;
  }
  return NotFound((fs::path(dir) / name).string() +
                  "[.gz]: no such file (install the dataset, "
                  "or point the data root elsewhere)");
}

Expected<Dataset> LoadFashionMnist(const DataRoots& roots) {
  const std::string dir = (fs::path(roots.datasets_dir) / "fashion-mnist").string();
  ASSIGN_OR_RETURN(std::string train_images, FindFile(dir, "train-images-idx3-ubyte"));
  ASSIGN_OR_RETURN(std::string train_labels, FindFile(dir, "train-labels-idx1-ubyte"));
  ASSIGN_OR_RETURN(std::string test_images, FindFile(dir, "t10k-images-idx3-ubyte"));
  ASSIGN_OR_RETURN(std::string test_labels, FindFile(dir, "t10k-labels-idx1-ubyte"));
  ASSIGN_OR_RETURN(Split train, ReadIdxSplit(train_images, train_labels, 10));
  ASSIGN_OR_RETURN(Split test, ReadIdxSplit(test_images, test_labels, 10));
  return FromDenseSplits("fashion-mnist", std::move(train), std::move(test),
                         {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                          "Sneaker", "Bag", "Ankle boot"});
}

Expected<Dataset> LoadDigits(const DataRoots& roots) {
  ASSIGN_OR_RETURN(Split all, ReadDigitsCsv(roots.digits_csv));
  std::vector<uint32_t> order = SeededPermutation(all.size(), kDigitsSplitSeed);
  // A quarter for test, rounded up: 1797 -> 1347 / 450, as scikit-learn's default split.
  size_t test_size = (all.size() + 3) / 4;
  std::vector<uint32_t> train_indices(order.begin(), order.end() - test_size);
  std::vector<uint32_t> test_indices(order.end() - test_size, order.end());
  return FromDenseSplits("digits", all.Select(train_indices), all.Select(test_indices),
                         Numbered(10));
}

// Class names from a CIFAR meta text file when present, else "0", "1", ...
std::vector<std::string> CifarClassNames(const std::string& dir, CifarKind kind) {
  const int n = kind == CifarKind::kCifar10 ? 10 : 100;
  std::ifstream file(fs::path(dir) /
                     (kind == CifarKind::kCifar10 ? "batches.meta.txt" : "fine_label_names.txt"));
  std::vector<std::string> names;
  std::string line;
  while (file && std::getline(file, line)) {
    if (!line.empty()) names.push_back(line);
  }
  return static_cast<int>(names.size()) == n ? names : Numbered(n);
}

Expected<Dataset> LoadCifar(const std::string& reference, const std::string& dir, CifarKind kind) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    return NotFound(reference + ": " + dir + " is not a directory (give the folder holding the " +
                    "binary version's .bin files)");
  }
  std::vector<Split> splits;
  for (bool train : {true, false}) {
    std::vector<std::string> paths;
    for (const std::string& name : CifarFileNames(kind, train)) {
      paths.push_back((fs::path(dir) / name).string());
    }
    ASSIGN_OR_RETURN(Split split, ReadCifarFiles(paths, kind));
    splits.push_back(std::move(split));
  }
  return FromDenseSplits(reference, std::move(splits[0]), std::move(splits[1]),
                         CifarClassNames(dir, kind));
}

Expected<Dataset> LoadFolder(const std::string& reference, const std::string& dir) {
  std::error_code error;
  const std::string train_dir = (fs::path(dir) / "train").string();
  std::string test_dir = (fs::path(dir) / "test").string();
  if (!fs::is_directory(test_dir, error)) test_dir = (fs::path(dir) / "val").string();
  if (!fs::is_directory(train_dir, error) || !fs::is_directory(test_dir, error)) {
    return NotFound(reference + ": expected " + train_dir + "/ and " + dir +
                    "/test/ (or val/), each with one subfolder per class");
  }
  Dataset dataset;
  dataset.reference = reference;
  ASSIGN_OR_RETURN(dataset.train, ReadImageFolder(train_dir, {}, &dataset.class_names));
  ASSIGN_OR_RETURN(dataset.test, ReadImageFolder(test_dir, dataset.class_names, nullptr));
  dataset.num_classes = static_cast<int>(dataset.class_names.size());
  return dataset;
}

// "a-b" -> (a, b), or nothing.
bool ParseRange(std::string_view text, int* first, int* last) {
  size_t dash = text.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 >= text.size()) return false;
  try {
    size_t used_first = 0, used_last = 0;
    std::string a(text.substr(0, dash)), b(text.substr(dash + 1));
    *first = std::stoi(a, &used_first);
    *last = std::stoi(b, &used_last);
    return used_first == a.size() && used_last == b.size();
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

std::vector<std::string> NamedDatasets() {
  return {"fashion-mnist", "fashion-mnist/0-4", "fashion-mnist/5-9", "digits"};
}

AugmentOptions DefaultAugment(const Dataset& dataset, int resolution) {
  AugmentOptions options;
  options.resolution = resolution;
  options.mean = dataset.mean;
  options.std = dataset.std;
  options.flip = dataset.reference.rfind("digits", 0) != 0;
  if (dataset.train.dense()) {
    options.resize = ResizeMode::kStretch;
    options.crop_padding = std::max(1, (std::min(dataset.height, dataset.width) + 4) / 8);
  } else {
    options.resize = ResizeMode::kShorterSideCrop;
  }
  return options;
}

Expected<Dataset> ClassRange(const Dataset& dataset, int first, int last) {
  if (first < 0 || last < first || last >= dataset.num_classes) {
    return InvalidArgument("class range " + std::to_string(first) + "-" + std::to_string(last) +
                           " of " + dataset.reference + " must lie within 0-" +
                           std::to_string(dataset.num_classes - 1));
  }
  std::vector<int32_t> label_map(dataset.num_classes, -1);
  for (int c = first; c <= last; ++c) label_map[c] = c - first;
  const int classes = last - first + 1;
  auto keep = [&](const Split& split) {
    std::vector<uint32_t> indices;
    for (size_t i = 0; i < split.size(); ++i) {
      if (label_map[split.label(i)] >= 0) indices.push_back(static_cast<uint32_t>(i));
    }
    return split.Select(indices, label_map, classes);
  };
  std::string reference =
      dataset.reference + "/" + std::to_string(first) + "-" + std::to_string(last);
  std::vector<std::string> names(dataset.class_names.begin() + first,
                                 dataset.class_names.begin() + last + 1);
  if (!dataset.train.dense()) {
    Dataset out = dataset;
    out.reference = reference;
    out.train = keep(dataset.train);
    out.test = keep(dataset.test);
    out.num_classes = classes;
    out.class_names = names;
    return out;
  }
  return FromDenseSplits(reference, keep(dataset.train), keep(dataset.test), names);
}

Expected<Dataset> LoadDataset(std::string_view reference, const DataRoots& roots) {
  const std::string ref(reference);
  size_t colon = ref.find(':');
  if (colon != std::string::npos) {
    const std::string kind = ref.substr(0, colon), dir = ref.substr(colon + 1);
    if (dir.empty()) {
      return InvalidArgument("dataset reference '" + ref + "' names no directory after '" + kind +
                             ":'");
    }
    if (kind == "cifar10") return LoadCifar(ref, dir, CifarKind::kCifar10);
    if (kind == "cifar100") return LoadCifar(ref, dir, CifarKind::kCifar100);
    if (kind == "folder") return LoadFolder(ref, dir);
    return InvalidArgument("unknown dataset kind '" + kind + ":' in '" + ref +
                           "'; use cifar10:<dir>, cifar100:<dir> or folder:<dir>" +
                           DidYouMean(kind, {"cifar10", "cifar100", "folder"}));
  }
  std::string base = ref;
  int first = -1, last = -1;
  size_t slash = ref.rfind('/');
  if (slash != std::string::npos) {
    if (!ParseRange(std::string_view(ref).substr(slash + 1), &first, &last)) {
      return InvalidArgument("dataset '" + ref + "': after '/' comes a class range such as 0-4" +
                             DidYouMean(ref, NamedDatasets()));
    }
    base = ref.substr(0, slash);
  }
  if (base != "fashion-mnist" && base != "digits") {
    std::vector<std::string> known = NamedDatasets();
    known.insert(known.end(), {"cifar10:<dir>", "cifar100:<dir>", "folder:<dir>"});
    return InvalidArgument("unknown dataset '" + ref + "'; known: fashion-mnist, digits, " +
                           "<name>/<a>-<b>, cifar10:<dir>, cifar100:<dir>, folder:<dir>" +
                           DidYouMean(ref, known));
  }
  Expected<Dataset> dataset = base == "digits" ? LoadDigits(roots) : LoadFashionMnist(roots);
  if (!dataset.ok() || first < 0) return dataset;
  return ClassRange(*dataset, first, last);
}

}  // namespace vitscale::data
