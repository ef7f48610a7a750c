// Datasets by reference string: the names sweep definitions and job specs use.
//
//   fashion-mnist        <root>/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
//                        60000 train / 10000 test, 10 classes, 28x28x1
//   fashion-mnist/0-4    classes 0..4 of both splits, labels kept (0..4)
//   fashion-mnist/5-9    classes 5..9 of both splits, labels remapped to 0..4
//   digits               scikit-learn's 1797 8x8x1 digits (pixels scaled to 0..255), split by a
//                        fixed seeded permutation into 1347 train / 450 test
//   <name>/<a>-<b>       classes a..b (inclusive) of any name above, remapped to 0..b-a
//   cifar10:<dir>        CIFAR-10 binary version (data_batch_{1..5}.bin, test_batch.bin)
//   cifar100:<dir>       CIFAR-100 binary version (train.bin, test.bin; fine labels)
//   folder:<dir>         image folders <dir>/train/<class>/*.{jpg,jpeg,png} and
//                        <dir>/test/<class>/... (or <dir>/val/...); classes sorted by name
//
// A relative <dir> is taken relative to the working directory. Loading is synchronous and
// thread-safe; the returned Dataset shares its pixels between copies.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "data/augment.h"
#include "data/split.h"

namespace vitscale::data {

// Where the named datasets live; tests and non-Debian installs point these elsewhere.
struct DataRoots {
  std::string datasets_dir = "/usr/share/datasets";  // holds fashion-mnist/
  std::string digits_csv = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";
};

struct Dataset {
  std::string reference;  // as passed to LoadDataset
  Split train;
  Split test;
  int num_classes = 0;
  std::vector<std::string> class_names;  // num_classes entries
  // Shape of every image for dense datasets; 0 for image folders (sizes vary).
  int height = 0, width = 0, channels = 0;
  // Per-channel mean and standard deviation of pixel/255 over the train split (gray datasets
  // repeat theirs over the 3 model channels); 0.5 / 0.5 for image folders, which are not
  // scanned at load time.
  std::array<float, 3> mean = {0.5f, 0.5f, 0.5f};
  std::array<float, 3> std = {0.5f, 0.5f, 0.5f};
};

// Loads a dataset by reference; unknown names get the nearest known name in the error.
Expected<Dataset> LoadDataset(std::string_view reference, const DataRoots& roots = DataRoots());

// The names LoadDataset knows without a ':' prefix (for help text and spelling suggestions).
std::vector<std::string> NamedDatasets();

// The default preprocessing of `dataset` at `resolution`, which a recipe may then override:
// dense images are stretched to the resolution, with training crops from a zero padding of
// 1/8 of their side (4 for 28x28 and 32x32, 1 for 8x8) and flips (not for digits, whose
// mirror images are other glyphs); image folders are resized and cropped (random in training,
// centre otherwise) with flips. Normalised with the dataset's mean and std.
AugmentOptions DefaultAugment(const Dataset& dataset, int resolution);

// Classes [first, last] of `dataset`, both splits, labels remapped to 0..last-first.
Expected<Dataset> ClassRange(const Dataset& dataset, int first, int last);

}  // namespace vitscale::data
