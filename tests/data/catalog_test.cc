// Every catalog dataset loads by name from its documented layout under the datasets directory
// (small files made here in that layout), and says where its data must be when it is absent.
#include <gtest/gtest.h>
#include <matio.h>

#include <filesystem>
#include <string>
#include <vector>

#include "data/datasets.h"
#include "data/readers.h"
#include "data/shards.h"
#include "sweep/datasets.h"
#include "tests/data/data_test_util.h"

namespace vitscale::data {
namespace {

namespace fs = std::filesystem;
using testing::Photo;
using testing::TempDir;
using testing::WriteBytes;
using testing::WritePhotoFolder;

DataRoots Roots(const TempDir& dir) {
  DataRoots roots;
  roots.datasets_dir = dir / "sets";
  return roots;
}

TEST(Catalog, EveryNameIsLoadableOrSaysWhereItsDataGoes) {
  TempDir dir;
  for (const sweep::DatasetInfo& info : sweep::Datasets()) {
    if (info.layout == sweep::DatasetLayout::kDigitsCsv) continue;
    Expected<Dataset> dataset = LoadDataset(info.name, Roots(dir));
    ASSERT_FALSE(dataset.ok()) << info.name;
    EXPECT_EQ(dataset.status().code(), StatusCode::kNotFound) << info.name;
    const std::string& message = dataset.status().message();
    EXPECT_NE(message.find("no data at " + (dir / ("sets/" + info.directory))), std::string::npos)
        << message;
    EXPECT_NE(message.find(info.expected_files), std::string::npos) << message;
    EXPECT_NE(message.find("vitscale data pack SRC " + (dir / ("sets/" + info.directory))),
              std::string::npos)
        << message;
  }
}

TEST(Catalog, ImageNetFromItsFolderLayout) {
  TempDir dir;
  WritePhotoFolder(dir / "sets/imagenet", "train", 3, 4);
  WritePhotoFolder(dir / "sets/imagenet", "val", 3, 2);
  Expected<Dataset> imagenet = LoadDataset("imagenet", Roots(dir));
  ASSERT_TRUE(imagenet.ok()) << imagenet.status().ToString();
  EXPECT_EQ(imagenet->train.size(), 12u);
  EXPECT_EQ(imagenet->test.size(), 6u);
  EXPECT_EQ(imagenet->class_names[2], "class2");
  EXPECT_EQ(DefaultAugment(*imagenet, 224).resize, ResizeMode::kInceptionCrop);
  // ImageNet-21k has no test split in its release.
  WritePhotoFolder(dir / "sets/imagenet21k", "train", 5, 2);
  Expected<Dataset> in21k = LoadDataset("imagenet21k", Roots(dir));
  ASSERT_TRUE(in21k.ok()) << in21k.status().ToString();
  EXPECT_EQ(in21k->train.size(), 10u);
  EXPECT_EQ(in21k->test.size(), 0u);
}

TEST(Catalog, PetsFromTheReleasedAnnotations) {
  TempDir dir;
  const std::string base = dir / "sets/pets";
  std::string trainval = "#Image CLASS-ID SPECIES BREED ID\n", test;
  const std::vector<std::string> breeds = {"Abyssinian", "american_bulldog", "Bengal"};
  for (size_t b = 0; b < breeds.size(); ++b) {
    for (int i = 1; i <= 3; ++i) {
      const std::string name = breeds[b] + "_" + std::to_string(i);
      WriteBytes(base + "/images/" + name + ".jpg", *EncodeJpeg(Photo(20, 24, 3, i)));
      (i < 3 ? trainval : test) += name + " " + std::to_string(b + 1) + " 1 1\n";
    }
  }
  WriteBytes(base + "/annotations/trainval.txt", trainval);
  WriteBytes(base + "/annotations/test.txt", test);
  Expected<Dataset> pets = LoadDataset("pets", Roots(dir));
  ASSERT_TRUE(pets.ok()) << pets.status().ToString();
  EXPECT_EQ(pets->num_classes, 37);
  EXPECT_EQ(pets->train.size(), 6u);
  EXPECT_EQ(pets->test.size(), 3u);
  EXPECT_EQ(pets->class_names[1], "american_bulldog");
  EXPECT_EQ(pets->test.labels(), (std::vector<int32_t>{0, 1, 2}));
  Image scratch;
  EXPECT_TRUE(pets->train.Get(5, &scratch).ok());
  // A class id past 37 is named with its line.
  WriteBytes(base + "/annotations/test.txt", test + "Bengal_9 38 1 1\n");
  Expected<Dataset> bad = LoadDataset("pets", Roots(dir));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("test.txt:4: class id 38 is out of range"),
            std::string::npos)
      << bad.status().message();
}

void WriteMat(const std::string& path,
              const std::vector<std::pair<std::string, std::vector<double>>>& vars) {
  fs::create_directories(fs::path(path).parent_path());
  mat_t* mat = Mat_CreateVer(path.c_str(), nullptr, MAT_FT_MAT5);
  ASSERT_NE(mat, nullptr);
  for (const auto& [name, values] : vars) {
    size_t dims[2] = {1, values.size()};
    matvar_t* var = Mat_VarCreate(name.c_str(), MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims,
                                  const_cast<double*>(values.data()), 0);
    ASSERT_NE(var, nullptr);
    ASSERT_EQ(Mat_VarWrite(mat, var, MAT_COMPRESSION_ZLIB), 0);
    Mat_VarFree(var);
  }
  Mat_Close(mat);
}

TEST(Catalog, FlowersFromTheReleasedMatFiles) {
  TempDir dir;
  const std::string base = dir / "sets/flowers";
  std::vector<double> labels;
  for (int id = 1; id <= 8; ++id) {
    char name[32];
    std::snprintf(name, sizeof(name), "jpg/image_%05d.jpg", id);
    WriteBytes(base + "/" + name, *EncodeJpeg(Photo(16, 18, 3, id)));
    labels.push_back(id <= 4 ? 1 : 102);
  }
  WriteMat(base + "/imagelabels.mat", {{"labels", labels}});
  WriteMat(base + "/setid.mat", {{"trnid", {1, 5}}, {"valid", {2, 6}}, {"tstid", {3, 4, 7, 8}}});
  Expected<Dataset> flowers = LoadDataset("flowers", Roots(dir));
  ASSERT_TRUE(flowers.ok()) << flowers.status().ToString();
  EXPECT_EQ(flowers->num_classes, 102);
  EXPECT_EQ(flowers->train.labels(), (std::vector<int32_t>{0, 101, 0, 101}));
  EXPECT_EQ(flowers->test.size(), 4u);
  EXPECT_NE(flowers->train.source(1).find("jpg/image_00005.jpg"), std::string::npos);
  Image scratch;
  EXPECT_TRUE(flowers->test.Get(3, &scratch).ok());
  labels[6] = 103;
  WriteMat(base + "/imagelabels.mat", {{"labels", labels}});
  Expected<Dataset> bad = LoadDataset("flowers", Roots(dir));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("label 103 of image 7 is out of range"), std::string::npos)
      << bad.status().message();
}

TEST(Catalog, Cifar100AndJftFromPackedShards) {
  TempDir dir;
  std::string records;
  for (int i = 0; i < 4; ++i) {
    records.push_back(static_cast<char>(i % 20));  // coarse
    records.push_back(static_cast<char>(i * 25));  // fine
    records.append(3072, static_cast<char>(i * 9));
  }
  WriteBytes(dir / "sets/cifar100/train.bin", records);
  WriteBytes(dir / "sets/cifar100/test.bin", records);
  Expected<Dataset> cifar = LoadDataset("cifar100/25-75", Roots(dir));
  ASSERT_TRUE(cifar.ok()) << cifar.status().ToString();
  EXPECT_EQ(cifar->train.labels(), (std::vector<int32_t>{0, 25, 50}));
  // JFT is whatever the user packs at <datasets dir>/jft-300m.
  WritePhotoFolder(dir / "jft-src", "train", 4, 3);
  Expected<Dataset> source = LoadPackSource(dir / "jft-src", DataRoots());
  ASSERT_TRUE(source.ok());
  PackOptions options;
  options.shard_size = 5;
  ASSERT_TRUE(PackDataset(*source, "jft", dir / "sets/jft-300m", options).ok());
  Expected<Dataset> jft = LoadDataset("jft-300m", Roots(dir));
  ASSERT_TRUE(jft.ok()) << jft.status().ToString();
  EXPECT_EQ(jft->train.size(), 12u);
  EXPECT_EQ(jft->reference, "jft-300m");
}

}  // namespace
}  // namespace vitscale::data
