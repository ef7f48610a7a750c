#include "data/datasets.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <utility>

#include <matio.h>

#include "common/names.h"
#include "data/order.h"
#include "data/readers.h"
#include "data/shards.h"
#include "sweep/datasets.h"

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

Expected<Dataset> LoadFashionMnist(const std::string& dir) {
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

// Image folders <dir>/train/<class>/ and <dir>/test/ (or val/); the test split may be missing
// only where `test_optional` (ImageNet-21k has none).
Expected<Dataset> LoadFolder(const std::string& reference, const std::string& dir,
                             bool test_optional = false) {
  std::error_code error;
  const std::string train_dir = (fs::path(dir) / "train").string();
  std::string test_dir = (fs::path(dir) / "test").string();
  if (!fs::is_directory(test_dir, error)) test_dir = (fs::path(dir) / "val").string();
  const bool has_test = fs::is_directory(test_dir, error);
  if (!fs::is_directory(train_dir, error) || (!has_test && !test_optional)) {
    return NotFound(reference + ": expected " + train_dir + "/" +
                    (test_optional ? "" : " and " + dir + "/test/ (or val/)") +
                    ", each with one subfolder per class");
  }
  Dataset dataset;
  dataset.reference = reference;
  ASSIGN_OR_RETURN(dataset.train, ReadImageFolder(train_dir, {}, &dataset.class_names));
  dataset.num_classes = static_cast<int>(dataset.class_names.size());
  if (has_test) {
    ASSIGN_OR_RETURN(dataset.test, ReadImageFolder(test_dir, dataset.class_names, nullptr));
  } else {
    dataset.test = Split::Files({}, {}, dataset.num_classes);
  }
  return dataset;
}

// Oxford-IIIT Pets as released: images/<Breed>_<n>.jpg and annotations/{trainval,test}.txt,
// whose lines are "<image> <class id 1..37> <species> <breed id>" ('#' starts a comment).
// Class names are the image names without their "_<n>", in class-id order.
Expected<Dataset> LoadPets(const std::string& reference, const std::string& dir) {
  constexpr int kClasses = 37;
  Dataset dataset;
  dataset.reference = reference;
  dataset.num_classes = kClasses;
  dataset.class_names.assign(kClasses, "");
  for (bool train : {true, false}) {
    const std::string list =
        (fs::path(dir) / "annotations" / (train ? "trainval.txt" : "test.txt")).string();
    ASSIGN_OR_RETURN(std::string text, ReadMaybeGzipFile(list));
    std::vector<std::string> paths;
    std::vector<int32_t> labels;
    size_t line_number = 0, pos = 0;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      const std::string line = text.substr(pos, end - pos);
      pos = end + 1;
      ++line_number;
      if (line.empty() || line[0] == '#') continue;
      char name[256];
      int class_id = 0;
      if (std::sscanf(line.c_str(), "%255s %d", name, &class_id) != 2) {
        return Corruption(list + ":" + std::to_string(line_number) +
                          ": expected '<image> <class id> <species> <breed id>'");
      }
      if (class_id < 1 || class_id > kClasses) {
        return Corruption(list + ":" + std::to_string(line_number) + ": class id " +
                          std::to_string(class_id) + " is out of range 1..37");
      }
      const std::string image = name;
      std::string& class_name = dataset.class_names[class_id - 1];
      if (class_name.empty()) class_name = image.substr(0, image.rfind('_'));
      paths.push_back((fs::path(dir) / "images" / (image + ".jpg")).string());
      labels.push_back(class_id - 1);
    }
    if (paths.empty()) return Corruption(list + ": lists no images");
    (train ? dataset.train : dataset.test) =
        Split::Files(std::move(paths), std::move(labels), kClasses);
  }
  for (int c = 0; c < kClasses; ++c) {
    if (dataset.class_names[c].empty()) dataset.class_names[c] = std::to_string(c + 1);
  }
  return dataset;
}

// A numeric MATLAB variable as integers (libmatio reads v5, compressed or not, and v7.3).
Expected<std::vector<int64_t>> ReadMatIntegers(const std::string& path, const char* variable) {
  mat_t* mat = Mat_Open(path.c_str(), MAT_ACC_RDONLY);
  if (mat == nullptr) {
    std::error_code error;
    if (!fs::exists(path, error)) return NotFound(path + ": no such file");
    return Corruption(path + ": not a readable MATLAB .mat file");
  }
  matvar_t* var = Mat_VarRead(mat, variable);
  Mat_Close(mat);
  if (var == nullptr) return Corruption(path + ": has no variable '" + variable + "'");
  std::vector<int64_t> values;
  const size_t n = var->rank > 0 ? Mat_VarGetSize(var) / (var->data_size > 0 ? var->data_size : 1)
                                 : 0;
  bool ok = var->data != nullptr && !var->isComplex;
  for (size_t i = 0; ok && i < n; ++i) {
    double v = 0;
    switch (var->class_type) {
      case MAT_C_DOUBLE: v = static_cast<const double*>(var->data)[i]; break;
      case MAT_C_SINGLE: v = static_cast<const float*>(var->data)[i]; break;
      case MAT_C_UINT8: v = static_cast<const uint8_t*>(var->data)[i]; break;
      case MAT_C_UINT16: v = static_cast<const uint16_t*>(var->data)[i]; break;
      case MAT_C_INT32: v = static_cast<const int32_t*>(var->data)[i]; break;
      case MAT_C_UINT32: v = static_cast<const uint32_t*>(var->data)[i]; break;
      default: ok = false; continue;
    }
    if (v != std::floor(v)) ok = false;
    values.push_back(static_cast<int64_t>(v));
  }
  Mat_VarFree(var);
  if (!ok) return Corruption(path + ": variable '" + variable + "' is not a real integer array");
  return values;
}

// Oxford Flowers-102 as released: jpg/image_NNNNN.jpg, imagelabels.mat ('labels', 1..102 per
// image) and setid.mat ('trnid', 'valid', 'tstid': 1-based image numbers). Train is trnid +
// valid (the paper's split), test is tstid.
Expected<Dataset> LoadFlowers(const std::string& reference, const std::string& dir) {
  constexpr int kClasses = 102;
  const std::string labels_path = (fs::path(dir) / "imagelabels.mat").string();
  const std::string setid_path = (fs::path(dir) / "setid.mat").string();
  ASSIGN_OR_RETURN(std::vector<int64_t> labels, ReadMatIntegers(labels_path, "labels"));
  Dataset dataset;
  dataset.reference = reference;
  dataset.num_classes = kClasses;
  dataset.class_names = Numbered(kClasses);
  for (bool train : {true, false}) {
    std::vector<int64_t> ids;
    for (const char* variable : train ? std::vector<const char*>{"trnid", "valid"}
                                      : std::vector<const char*>{"tstid"}) {
      ASSIGN_OR_RETURN(std::vector<int64_t> part, ReadMatIntegers(setid_path, variable));
      ids.insert(ids.end(), part.begin(), part.end());
    }
    std::vector<std::string> paths;
    std::vector<int32_t> split_labels;
    for (int64_t id : ids) {
      if (id < 1 || id > static_cast<int64_t>(labels.size())) {
        return Corruption(setid_path + ": image number " + std::to_string(id) +
                          " is outside 1.." + std::to_string(labels.size()) + " (" +
                          labels_path + " labels that many)");
      }
      const int64_t label = labels[id - 1];
      if (label < 1 || label > kClasses) {
        return Corruption(labels_path + ": label " + std::to_string(label) + " of image " +
                          std::to_string(id) + " is out of range 1..102");
      }
      char name[32];
      std::snprintf(name, sizeof(name), "image_%05lld.jpg", static_cast<long long>(id));
      paths.push_back((fs::path(dir) / "jpg" / name).string());
      split_labels.push_back(static_cast<int32_t>(label - 1));
    }
    (train ? dataset.train : dataset.test) =
        Split::Files(std::move(paths), std::move(split_labels), kClasses);
  }
  return dataset;
}

// A catalog dataset from <datasets dir>/<directory>: its packed copy when there is one, else
// its documented layout; when neither is there, says where the data must be and how to pack it.
Expected<Dataset> LoadCatalogDataset(const sweep::DatasetInfo& info, const DataRoots& roots) {
  using L = sweep::DatasetLayout;
  if (info.layout == L::kDigitsCsv) return LoadDigits(roots);
  const std::string dir = (fs::path(roots.datasets_dir) / info.directory).string();
  std::error_code error;
  if (fs::exists(fs::path(dir) / kManifestName, error)) return LoadPacked(dir, info.name);
  const std::string where =
      " It must hold " + info.expected_files + ", or a packed copy: `vitscale data pack SRC " +
      dir + "` (docs/data.md). The datasets directory is the job's run.datasets_dir.";
  if (!fs::is_directory(dir, error)) {
    return NotFound(info.name + ": no data at " + dir + "." + where);
  }
  Expected<Dataset> dataset = NotFound("");
  switch (info.layout) {
    case L::kFashionMnistIdx: dataset = LoadFashionMnist(dir); break;
    case L::kCifar10Binary: dataset = LoadCifar(info.name, dir, CifarKind::kCifar10); break;
    case L::kCifar100Binary: dataset = LoadCifar(info.name, dir, CifarKind::kCifar100); break;
    case L::kImageFolders: dataset = LoadFolder(info.name, dir, info.test_size == 0); break;
    case L::kPetsAnnotations: dataset = LoadPets(info.name, dir); break;
    case L::kFlowersMat: dataset = LoadFlowers(info.name, dir); break;
    case L::kPackedOnly:
      return NotFound(info.name + ": no " + kManifestName + " in " + dir + "." + where);
    case L::kDigitsCsv: break;
  }
  if (!dataset.ok() && dataset.status().code() == StatusCode::kNotFound) {
    return NotFound(dataset.status().message() + "." + where);
  }
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

std::vector<std::string> NamedDatasets() { return sweep::DatasetNames(); }

AugmentOptions DefaultAugment(const Dataset& dataset, int resolution) {
  AugmentOptions options;
  options.resolution = resolution;
  options.mean = dataset.mean;
  options.std = dataset.std;
  options.flip = dataset.reference.rfind("digits", 0) != 0;
  if (dataset.height > 0) {
    options.resize = ResizeMode::kStretch;
    options.crop_padding = std::max(1, (std::min(dataset.height, dataset.width) + 4) / 8);
  } else {
    options.resize = ResizeMode::kInceptionCrop;
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
    if (kind == "shards") return LoadPacked(dir, ref);
    const std::vector<std::string> kinds = {"cifar10", "cifar100", "folder", "shards"};
    return InvalidArgument("unknown dataset kind '" + kind + ":' in '" + ref +
                           "'; use cifar10:<dir>, cifar100:<dir>, folder:<dir> or shards:<dir>" +
                           DidYouMean(kind, kinds));
  }
  std::string base = ref;
  int first = -1, last = -1;
  Expected<sweep::DatasetInfo> info = sweep::LookupDataset(ref);
  size_t slash = ref.rfind('/');
  if (slash != std::string::npos) {
    if (!ParseRange(std::string_view(ref).substr(slash + 1), &first, &last)) {
      return InvalidArgument("dataset '" + ref + "': after '/' comes a class range such as 0-4" +
                             DidYouMean(ref, NamedDatasets()));
    }
    base = ref.substr(0, slash);
    info = sweep::LookupDataset(base);
  }
  if (!info.ok()) {
    return InvalidArgument(info.status().message() +
                           "; or <name>/<a>-<b>, cifar10:<dir>, cifar100:<dir>, folder:<dir>");
  }
  Expected<Dataset> dataset = LoadCatalogDataset(*info, roots);
  if (!dataset.ok() || first < 0) return dataset;
  return ClassRange(*dataset, first, last);
}

}  // namespace vitscale::data
