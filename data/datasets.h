// Datasets by reference string: the names sweep definitions and job specs use.
//
//   <catalog name>       any dataset of the catalog (sweep/datasets.h): fashion-mnist, digits,
//                        cifar10, cifar100, pets, flowers, imagenet, imagenet21k, jft-300m.
//                        Read from <datasets_dir>/<name>/: a packed copy (manifest.json) when
//                        there is one, else the release's own layout (docs/data.md); when
//                        neither is there the error says where the data must be and how to
//                        pack it. digits is scikit-learn's CSV (DataRoots::digits_csv).
//   <name>/<a>-<b>       classes a..b (inclusive) of any name above, remapped to 0..b-a
//   cifar10:<dir>        CIFAR-10 binary version (data_batch_{1..5}.bin, test_batch.bin)
//   cifar100:<dir>       CIFAR-100 binary version (train.bin, test.bin; fine labels)
//   folder:<dir>         image folders <dir>/train/<class>/*.{jpg,jpeg,png} and
//                        <dir>/test/<class>/... (or <dir>/val/...); classes sorted by name
//   shards:<dir>         a packed dataset (data/shards.h), e.g. a user-supplied JFT
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
  std::string datasets_dir = "/usr/share/datasets";  // holds fashion-mnist/, imagenet/, ...
  std::string digits_csv = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";
};

struct Dataset {
  std::string reference;  // as passed to LoadDataset
  Split train;
  Split test;
  int num_classes = 0;
  std::vector<std::string> class_names;  // num_classes entries
  // Shape of every image for dense datasets (and packed copies of them); 0 where sizes vary
  // (photos: image folders, packed photos).
  int height = 0, width = 0, channels = 0;
  // Per-channel mean and standard deviation of pixel/255 over the train split (gray datasets
  // repeat theirs over the 3 model channels); 0.5 / 0.5 for image folders, which are not
  // scanned at load time. A packed dense dataset keeps its source's statistics.
  std::array<float, 3> mean = {0.5f, 0.5f, 0.5f};
  std::array<float, 3> std = {0.5f, 0.5f, 0.5f};
};

// Loads a dataset by reference; unknown names get the nearest known name in the error.
Expected<Dataset> LoadDataset(std::string_view reference, const DataRoots& roots = DataRoots());

// The catalog's names, which LoadDataset knows without a ':' prefix.
std::vector<std::string> NamedDatasets();

// The default preprocessing of `dataset` at `resolution`, which a recipe may then override:
// images of one size are stretched to the resolution, with training crops from a zero padding
// of 1/8 of their side (4 for 28x28 and 32x32, 1 for 8x8) and flips (not for digits, whose
// mirror images are other glyphs); photos get the Inception random-resized crop and flips in
// training, resize and centre crop otherwise. Normalised with the dataset's mean and std.
AugmentOptions DefaultAugment(const Dataset& dataset, int resolution);

// Classes [first, last] of `dataset`, both splits, labels remapped to 0..last-first.
Expected<Dataset> ClassRange(const Dataset& dataset, int first, int last);

}  // namespace vitscale::data
