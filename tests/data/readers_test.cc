// Readers and named datasets, on files the tests write themselves (IDX plain and gzip, CIFAR
// binary, JPEG, PNG) plus the real Fashion-MNIST and digits files installed on this machine.
#include "data/readers.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/datasets.h"
#include "data/image_codec.h"

namespace vitscale::data {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "vitscale-data-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code error;
    fs::remove_all(path_, error);
  }
  std::string operator/(const std::string& name) const { return (fs::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteBytes(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

void WriteGzip(const std::string& path, const std::string& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr);
  ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(file), Z_OK);
}

std::string Idx(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::string out = {0, 0, 8, static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<char>((d >> shift) & 0xFF));
  }
  out.append(data.begin(), data.end());
  return out;
}

// n images of h x w whose pixel (y, x) of image i is (i * 7 + y * w + x) % 256; label i % 10.
void WriteIdxPair(const std::string& images, const std::string& labels, int n, int h, int w,
                  bool gzip) {
  std::vector<uint8_t> pixels, label_bytes;
  for (int i = 0; i < n; ++i) {
    for (int p = 0; p < h * w; ++p) pixels.push_back(static_cast<uint8_t>((i * 7 + p) % 256));
    label_bytes.push_back(static_cast<uint8_t>(i % 10));
  }
  std::string image_file = Idx({uint32_t(n), uint32_t(h), uint32_t(w)}, pixels);
  std::string label_file = Idx({uint32_t(n)}, label_bytes);
  if (gzip) {
    WriteGzip(images, image_file);
    WriteGzip(labels, label_file);
  } else {
    WriteBytes(images, image_file);
    WriteBytes(labels, label_file);
  }
}

TEST(IdxReader, ReadsPlainAndGzipFilesAlike) {
  TempDir dir;
  WriteIdxPair(dir / "a-images", dir / "a-labels", 12, 5, 4, false);
  WriteIdxPair(dir / "b-images.gz", dir / "b-labels.gz", 12, 5, 4, true);
  for (const char* prefix : {"a", "b"}) {
    std::string suffix = prefix[0] == 'b' ? ".gz" : "";
    Expected<Split> split = ReadIdxSplit(dir / (std::string(prefix) + "-images" + suffix),
                                         dir / (std::string(prefix) + "-labels" + suffix), 10);
    ASSERT_TRUE(split.ok()) << split.status().ToString();
    EXPECT_EQ(split->size(), 12u);
    EXPECT_EQ(split->height(), 5);
    EXPECT_EQ(split->width(), 4);
    EXPECT_EQ(split->channels(), 1);
    EXPECT_EQ(split->label(11), 1);
    Image scratch;
    Expected<ImageView> view = split->Get(3, &scratch);
    ASSERT_TRUE(view.ok());
    EXPECT_EQ(view->pixels[0], 21);          // 3 * 7
    EXPECT_EQ(view->pixels[1 * 4 + 2], 27);  // 21 + 6
  }
}

TEST(IdxReader, MissingFileIsNotFound) {
  TempDir dir;
  Expected<IdxArray> array = ReadIdxFile(dir / "nope.gz");
  ASSERT_FALSE(array.ok());
  EXPECT_EQ(array.status().code(), StatusCode::kNotFound);
  EXPECT_NE(array.status().message().find("nope.gz"), std::string::npos);
}

TEST(IdxReader, WrongMagicIsCorruption) {
  TempDir dir;
  WriteBytes(dir / "bad", std::string("\x00\x00\x0d\x01\x00\x00\x00\x01\x05", 9));
  Expected<IdxArray> array = ReadIdxFile(dir / "bad");
  ASSERT_FALSE(array.ok());
  EXPECT_EQ(array.status().code(), StatusCode::kCorruption);
  EXPECT_NE(array.status().message().find("0x0d"), std::string::npos);
  WriteBytes(dir / "text", "hello world");
  EXPECT_EQ(ReadIdxFile(dir / "text").status().code(), StatusCode::kCorruption);
}

TEST(IdxReader, TruncatedPlainAndGzipFilesAreCorruption) {
  TempDir dir;
  std::string file = Idx({4, 3, 3}, std::vector<uint8_t>(36, 1));
  WriteBytes(dir / "short", file.substr(0, file.size() - 5));
  Expected<IdxArray> array = ReadIdxFile(dir / "short");
  ASSERT_FALSE(array.ok());
  EXPECT_EQ(array.status().code(), StatusCode::kCorruption);
  EXPECT_NE(array.status().message().find("truncated"), std::string::npos);

  // A gzip stream cut in the middle.
  WriteGzip(dir / "full.gz", Idx({400, 30, 30}, std::vector<uint8_t>(360000, 7)));
  std::ifstream in(dir / "full.gz", std::ios::binary);
  std::string gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  WriteBytes(dir / "cut.gz", gz.substr(0, gz.size() / 2));
  array = ReadIdxFile(dir / "cut.gz");
  ASSERT_FALSE(array.ok());
  EXPECT_EQ(array.status().code(), StatusCode::kCorruption) << array.status().ToString();
}

TEST(IdxReader, LabelOutOfRangeAndCountMismatch) {
  TempDir dir;
  WriteBytes(dir / "images", Idx({2, 2, 2}, std::vector<uint8_t>(8, 0)));
  WriteBytes(dir / "labels", Idx({2}, {3, 12}));
  Expected<Split> split = ReadIdxSplit(dir / "images", dir / "labels", 10);
  ASSERT_FALSE(split.ok());
  EXPECT_EQ(split.status().code(), StatusCode::kCorruption);
  EXPECT_NE(split.status().message().find("label 12 of example 1"), std::string::npos);

  WriteBytes(dir / "labels3", Idx({3}, {1, 2, 3}));
  split = ReadIdxSplit(dir / "images", dir / "labels3", 10);
  ASSERT_FALSE(split.ok());
  EXPECT_NE(split.status().message().find("3 labels"), std::string::npos);
}

std::string CifarRecord(int coarse, int label, int seed, bool cifar100) {
  std::string record;
  if (cifar100) record.push_back(static_cast<char>(coarse));
  record.push_back(static_cast<char>(label));
  for (int c = 0; c < 3; ++c) {
    for (int p = 0; p < 1024; ++p) record.push_back(static_cast<char>((seed + c * 50 + p) % 256));
  }
  return record;
}

TEST(CifarReader, ReadsCifar10PlanesAsHwc) {
  TempDir dir;
  WriteBytes(dir / "a.bin", CifarRecord(0, 3, 0, false) + CifarRecord(0, 9, 1, false));
  WriteBytes(dir / "b.bin", CifarRecord(0, 5, 2, false));
  Expected<Split> split = ReadCifarFiles({dir / "a.bin", dir / "b.bin"}, CifarKind::kCifar10);
  ASSERT_TRUE(split.ok()) << split.status().ToString();
  ASSERT_EQ(split->size(), 3u);
  EXPECT_EQ(split->labels(), (std::vector<int32_t>{3, 9, 5}));
  Image scratch;
  ImageView view = *split->Get(2, &scratch);
  EXPECT_EQ(view.channels, 3);
  // Pixel 1 of record seed 2: R = 3, G = 53, B = 103.
  EXPECT_EQ(view.pixels[3], 3);
  EXPECT_EQ(view.pixels[4], 53);
  EXPECT_EQ(view.pixels[5], 103);
}

TEST(CifarReader, Cifar100UsesFineLabelsAndChecksRange) {
  TempDir dir;
  WriteBytes(dir / "train.bin", CifarRecord(4, 87, 0, true));
  Expected<Split> split = ReadCifarFiles({dir / "train.bin"}, CifarKind::kCifar100);
  ASSERT_TRUE(split.ok());
  EXPECT_EQ(split->label(0), 87);
  EXPECT_EQ(split->num_classes(), 100);

  WriteBytes(dir / "bad.bin", CifarRecord(0, 10, 0, false));
  split = ReadCifarFiles({dir / "bad.bin"}, CifarKind::kCifar10);
  ASSERT_FALSE(split.ok());
  EXPECT_NE(split.status().message().find("label 10"), std::string::npos);

  WriteBytes(dir / "short.bin", CifarRecord(0, 1, 0, false).substr(0, 3000));
  split = ReadCifarFiles({dir / "short.bin"}, CifarKind::kCifar10);
  ASSERT_FALSE(split.ok());
  EXPECT_EQ(split.status().code(), StatusCode::kCorruption);
  EXPECT_NE(split.status().message().find("3073-byte records"), std::string::npos);
}

// A smooth ramp (JPEG keeps it well) with a per-channel offset.
Image Gradient(int h, int w, int channels) {
  Image image{h, w, channels, {}};
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < channels; ++c) {
        image.pixels.push_back(static_cast<uint8_t>((y * 4 + x * 2 + c * 30) % 256));
      }
    }
  }
  return image;
}

TEST(ImageCodec, PngRoundTripIsExactForGrayAndRgb) {
  for (int channels : {1, 3}) {
    Image image = Gradient(13, 17, channels);
    Expected<std::string> png = EncodePng(image);
    ASSERT_TRUE(png.ok()) << png.status().ToString();
    Expected<Image> decoded = DecodePng(*png, "memory");
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(decoded->channels, channels);
    EXPECT_EQ(decoded->height, 13);
    EXPECT_EQ(decoded->width, 17);
    EXPECT_EQ(decoded->pixels, image.pixels);
  }
}

TEST(ImageCodec, JpegRoundTripIsCloseForGrayAndRgb) {
  for (int channels : {1, 3}) {
    Image image = Gradient(24, 40, channels);
    Expected<std::string> jpeg = EncodeJpeg(image, 98);
    ASSERT_TRUE(jpeg.ok()) << jpeg.status().ToString();
    Expected<Image> decoded = DecodeJpeg(*jpeg, "memory");
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    ASSERT_EQ(decoded->channels, channels);
    ASSERT_EQ(decoded->pixels.size(), image.pixels.size());
    double error = 0;
    for (size_t i = 0; i < image.pixels.size(); ++i) {
      error += std::abs(int(decoded->pixels[i]) - int(image.pixels[i]));
    }
    EXPECT_LT(error / image.pixels.size(), 4.0);
  }
}

TEST(ImageCodec, CorruptFilesAreReportedWithTheirPath) {
  TempDir dir;
  Image image = Gradient(16, 16, 3);
  std::string jpeg = *EncodeJpeg(image);
  WriteBytes(dir / "cut.jpg", jpeg.substr(0, 20));
  Expected<Image> decoded = ReadImageFile(dir / "cut.jpg");
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
  EXPECT_NE(decoded.status().message().find("cut.jpg"), std::string::npos);

  std::string png = *EncodePng(image);
  WriteBytes(dir / "cut.png", png.substr(0, 40));
  EXPECT_EQ(ReadImageFile(dir / "cut.png").status().code(), StatusCode::kCorruption);
  WriteBytes(dir / "text.png", "not an image");
  EXPECT_EQ(ReadImageFile(dir / "text.png").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(ReadImageFile(dir / "absent.png").status().code(), StatusCode::kNotFound);
}

// <root>/{train,test}/{cat,dog}/ with PNG and JPEG files of different sizes and colour kinds.
void WriteFolderDataset(const TempDir& dir) {
  for (const char* split : {"train", "test"}) {
    std::string base = dir / split;
    WriteBytes(base + "/cat/1.png", *EncodePng(Gradient(10, 14, 3)));
    WriteBytes(base + "/cat/2.JPG", *EncodeJpeg(Gradient(20, 12, 1)));
    WriteBytes(base + "/dog/a.jpeg", *EncodeJpeg(Gradient(9, 9, 3)));
    WriteBytes(base + "/dog/notes.txt", "ignored");
  }
}

TEST(ImageFolder, ClassesFromSortedSubfoldersAndFilesDecodeLazily) {
  TempDir dir;
  WriteFolderDataset(dir);
  Expected<Dataset> dataset = LoadDataset("folder:" + dir.path());
  ASSERT_TRUE(dataset.ok()) << dataset.status().ToString();
  EXPECT_EQ(dataset->class_names, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(dataset->num_classes, 2);
  ASSERT_EQ(dataset->train.size(), 3u);
  EXPECT_EQ(dataset->test.size(), 3u);
  EXPECT_EQ(dataset->train.labels(), (std::vector<int32_t>{0, 0, 1}));
  Image scratch;
  Expected<ImageView> view = dataset->train.Get(1, &scratch);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  EXPECT_EQ(view->height, 20);
  EXPECT_EQ(view->width, 12);
  EXPECT_EQ(view->channels, 1);
  EXPECT_EQ(dataset->train.Get(2, &scratch)->channels, 3);
  EXPECT_EQ(DefaultAugment(*dataset, 224).resize, ResizeMode::kInceptionCrop);
}

TEST(ImageFolder, TestClassesMustMatchTrain) {
  TempDir dir;
  WriteFolderDataset(dir);
  WriteBytes(dir / "test/dgo/x.png", *EncodePng(Gradient(4, 4, 1)));
  Expected<Dataset> dataset = LoadDataset("folder:" + dir.path());
  ASSERT_FALSE(dataset.ok());
  EXPECT_NE(dataset.status().message().find("did you mean 'dog'"), std::string::npos)
      << dataset.status().message();
  EXPECT_EQ(LoadDataset("folder:" + (dir / "absent")).status().code(), StatusCode::kNotFound);
}

TEST(CifarDataset, LoadsFromDirectoryReference) {
  TempDir dir;
  for (int b = 1; b <= 5; ++b) {
    WriteBytes(dir / ("data_batch_" + std::to_string(b) + ".bin"),
               CifarRecord(0, b, b, false) + CifarRecord(0, 0, 2 * b, false));
  }
  WriteBytes(dir / "test_batch.bin", CifarRecord(0, 7, 0, false));
  Expected<Dataset> dataset = LoadDataset("cifar10:" + dir.path());
  ASSERT_TRUE(dataset.ok()) << dataset.status().ToString();
  EXPECT_EQ(dataset->train.size(), 10u);
  EXPECT_EQ(dataset->test.size(), 1u);
  EXPECT_EQ(dataset->class_names.size(), 10u);
  EXPECT_GT(dataset->std[0], 0.f);
  fs::remove(dir / "data_batch_4.bin");
  Expected<Dataset> missing = LoadDataset("cifar10:" + dir.path());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("data_batch_4.bin"), std::string::npos);
}

TEST(NamedDatasets, UnknownNamesSuggestTheNearest) {
  Expected<Dataset> dataset = LoadDataset("fashion-mnst");
  ASSERT_FALSE(dataset.ok());
  EXPECT_EQ(dataset.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dataset.status().message().find("did you mean 'fashion-mnist'"), std::string::npos)
      << dataset.status().message();
  EXPECT_FALSE(LoadDataset("cifar11:/tmp").ok());
  EXPECT_FALSE(LoadDataset("digits/3-12").ok());
  EXPECT_FALSE(LoadDataset("digits/x").ok());
}

TEST(NamedDatasets, DataRootPointsElsewhere) {
  TempDir dir;
  WriteIdxPair(dir / "fashion-mnist/train-images-idx3-ubyte",
               dir / "fashion-mnist/train-labels-idx1-ubyte", 40, 28, 28, false);
  WriteIdxPair(dir / "fashion-mnist/t10k-images-idx3-ubyte.gz",
               dir / "fashion-mnist/t10k-labels-idx1-ubyte.gz", 20, 28, 28, true);
  DataRoots roots;
  roots.datasets_dir = dir.path();
  Expected<Dataset> dataset = LoadDataset("fashion-mnist/5-9", roots);
  ASSERT_TRUE(dataset.ok()) << dataset.status().ToString();
  EXPECT_EQ(dataset->train.size(), 20u);
  EXPECT_EQ(dataset->test.size(), 10u);
  EXPECT_EQ(dataset->num_classes, 5);
  EXPECT_EQ(dataset->class_names[0], "Sandal");
  for (int32_t label : dataset->train.labels()) EXPECT_TRUE(label >= 0 && label < 5);
  // Example 0 of the view is example 5 of the file (label 5 -> 0), pixel 0 = 5 * 7.
  Image scratch;
  EXPECT_EQ(dataset->train.label(0), 0);
  EXPECT_EQ(dataset->train.Get(0, &scratch)->pixels[0], 35);

  roots.datasets_dir = dir / "elsewhere";
  Expected<Dataset> missing = LoadDataset("fashion-mnist", roots);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

std::array<int, 10> Histogram(const Split& split) {
  std::array<int, 10> counts{};
  for (int32_t label : split.labels()) ++counts[label];
  return counts;
}

TEST(RealData, FashionMnistSplitsAndClassViews) {
  Expected<Dataset> dataset = LoadDataset("fashion-mnist");
  ASSERT_TRUE(dataset.ok()) << dataset.status().ToString();
  EXPECT_EQ(dataset->train.size(), 60000u);
  ASSERT_EQ(dataset->test.size(), 10000u);
  EXPECT_EQ(dataset->height, 28);
  EXPECT_EQ(dataset->channels, 1);
  for (int count : Histogram(dataset->test)) EXPECT_EQ(count, 1000);
  for (int count : Histogram(dataset->train)) EXPECT_EQ(count, 6000);
  AugmentOptions augment = DefaultAugment(*dataset, 28);
  EXPECT_TRUE(augment.flip);
  EXPECT_EQ(augment.crop_padding, 4);
  EXPECT_EQ(augment.mean, dataset->mean);
  EXPECT_NEAR(dataset->mean[0], 0.286, 0.001);
  EXPECT_NEAR(dataset->std[0], 0.353, 0.001);

  for (const char* view : {"fashion-mnist/0-4", "fashion-mnist/5-9"}) {
    Expected<Dataset> part = LoadDataset(view);
    ASSERT_TRUE(part.ok()) << part.status().ToString();
    EXPECT_EQ(part->train.size(), 30000u);
    EXPECT_EQ(part->test.size(), 5000u);
    std::array<int, 10> histogram = Histogram(part->test);
    for (int c = 0; c < 5; ++c) EXPECT_EQ(histogram[c], 1000) << view;
  }
}

TEST(RealData, DigitsSplitIsFixedAndScaled) {
  Expected<Dataset> dataset = LoadDataset("digits");
  ASSERT_TRUE(dataset.ok()) << dataset.status().ToString();
  EXPECT_EQ(dataset->train.size(), 1347u);
  EXPECT_EQ(dataset->test.size(), 450u);
  EXPECT_EQ(dataset->height, 8);
  EXPECT_EQ(dataset->num_classes, 10);
  Expected<Split> all = ReadDigitsCsv(DataRoots().digits_csv);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1797u);
  // Row 0 of the file: 0,0,5,13,... label 0.
  Image scratch;
  ImageView first = *all->Get(0, &scratch);
  EXPECT_EQ(first.pixels[2], 80);   // round(5 * 255 / 16)
  EXPECT_EQ(first.pixels[3], 207);  // round(13 * 255 / 16)
  EXPECT_EQ(all->label(0), 0);
  AugmentOptions augment = DefaultAugment(*dataset, 28);
  EXPECT_FALSE(augment.flip);
  EXPECT_EQ(augment.crop_padding, 1);
  EXPECT_EQ(augment.resize, ResizeMode::kStretch);
  // Same split on every load.
  Expected<Dataset> again = LoadDataset("digits");
  EXPECT_EQ(again->train.labels(), dataset->train.labels());
}

TEST(DigitsReader, BadRowsNameTheLine) {
  TempDir dir;
  std::string line;
  for (int i = 0; i < 64; ++i) line += "1,";
  WriteBytes(dir / "d.csv", line + "3\n" + line + "17,3\n");
  Expected<Split> split = ReadDigitsCsv(dir / "d.csv");
  ASSERT_FALSE(split.ok());
  EXPECT_NE(split.status().message().find("d.csv:2"), std::string::npos)
      << split.status().message();
  WriteBytes(dir / "e.csv", line + "11\n");
  split = ReadDigitsCsv(dir / "e.csv");
  ASSERT_FALSE(split.ok());
  EXPECT_NE(split.status().message().find("label"), std::string::npos);
}

}  // namespace
}  // namespace vitscale::data
