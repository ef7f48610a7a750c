// The released .npz layouts worked out from the registry alone (no LibTorch): every registered
// model's layout holds exactly its parameters, with the released names and shapes; what a
// file's shapes say about its model; reading only the arrays' headers.
#include "models/npz_layout.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "models/npy.h"
#include "models/registry.h"

namespace vitscale::models {
namespace {

using Shapes = std::map<std::string, std::vector<int64_t>>;

ModelConfig Lookup(const std::string& name) {
  Expected<ModelConfig> config = LookupModel(name);
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return *config;
}

Shapes ShapesOf(const std::vector<NpzEntry>& layout) {
  Shapes shapes;
  for (const NpzEntry& e : layout) shapes[e.key] = e.shape;
  return shapes;
}

int64_t Elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

TEST(NpzLayoutTest, EveryRegisteredModelsLayoutHoldsExactlyItsParameters) {
  for (const std::string& name : ModelNames()) {
    SCOPED_TRACE(name);
    const ModelConfig config = Lookup(name);
    const InputShape input = ReferenceInput(config);
    const std::vector<NpzEntry> layout =
        ReleasedLayout(config, input.num_classes, input.resolution);
    int64_t elements = 0;
    std::set<std::string> keys;
    for (const NpzEntry& e : layout) {
      EXPECT_TRUE(keys.insert(e.key).second) << "duplicate " << e.key;
      elements += Elements(e.shape);
    }
    EXPECT_EQ(elements, ComputeCost(config, input.resolution, input.num_classes).params);
  }
}

TEST(NpzLayoutTest, BiTNamesAsReleased) {
  const Shapes r50 = ShapesOf(ReleasedLayout(Lookup("R50x1"), 21843, 224));
  const std::map<std::string, std::vector<int64_t>> expected = {
      {"resnet/root_block/standardized_conv2d/kernel", {7, 7, 3, 64}},
      {"resnet/block1/unit01/a/standardized_conv2d/kernel", {1, 1, 64, 64}},
      {"resnet/block1/unit01/a/group_norm/gamma", {64}},
      {"resnet/block1/unit01/a/proj/standardized_conv2d/kernel", {1, 1, 64, 256}},
      {"resnet/block1/unit02/b/standardized_conv2d/kernel", {3, 3, 64, 64}},
      {"resnet/block2/unit01/a/proj/standardized_conv2d/kernel", {1, 1, 256, 512}},
      {"resnet/block3/unit06/c/group_norm/beta", {256}},
      {"resnet/block4/unit03/c/standardized_conv2d/kernel", {1, 1, 512, 2048}},
      {"resnet/group_norm/gamma", {2048}},
      {"resnet/head/conv2d/kernel", {1, 1, 2048, 21843}},
      {"resnet/head/conv2d/bias", {21843}},
  };
  for (const auto& [key, shape] : expected) {
    ASSERT_TRUE(r50.count(key)) << key;
    EXPECT_EQ(r50.at(key), shape) << key;
  }
  EXPECT_FALSE(r50.count("resnet/block1/unit02/a/proj/standardized_conv2d/kernel"));
  EXPECT_FALSE(r50.count("resnet/block3/unit07/a/group_norm/gamma"));
  // BiT-M R152x4: 3 + 8 + 36 + 3 units, widths times 4.
  const Shapes r152 = ShapesOf(ReleasedLayout(Lookup("R152x4"), 21843, 224));
  EXPECT_EQ(r152.at("resnet/block3/unit36/b/standardized_conv2d/kernel"),
            (std::vector<int64_t>{3, 3, 1024, 1024}));
  EXPECT_EQ(r152.at("resnet/head/conv2d/kernel"), (std::vector<int64_t>{1, 1, 8192, 21843}));
}

TEST(NpzLayoutTest, HybridNamesAsReleased) {
  // R50+ViT-B/16: option (ii), [3, 4, 9] units, a 1x1 patch embedding from 1024 channels.
  const Shapes hybrid = ShapesOf(ReleasedLayout(Lookup("R50+ViT-B/16"), 21843, 224));
  EXPECT_EQ(hybrid.at("conv_root/kernel"), (std::vector<int64_t>{7, 7, 3, 64}));
  EXPECT_EQ(hybrid.at("gn_root/scale"), (std::vector<int64_t>{64}));
  EXPECT_EQ(hybrid.at("block1/unit1/conv_proj/kernel"), (std::vector<int64_t>{1, 1, 64, 256}));
  EXPECT_EQ(hybrid.at("block3/unit9/gn3/bias"), (std::vector<int64_t>{1024}));
  EXPECT_EQ(hybrid.at("embedding/kernel"), (std::vector<int64_t>{1, 1, 1024, 768}));
  EXPECT_EQ(hybrid.at("Transformer/posembed_input/pos_embedding"),
            (std::vector<int64_t>{1, 197, 768}));
  EXPECT_FALSE(hybrid.count("block4/unit1/conv1/kernel"));
}

TEST(NpzLayoutTest, InfersClassesResolutionAndPreLogitsFromAFile) {
  ModelConfig b16 = Lookup("ViT-B/16");
  b16.pre_logits = 768;
  // An ImageNet-21k file: 21843 classes, pre_logits, 224 grid; and a 384 fine-tuned one.
  Expected<ReleasedFileShape> shape =
      InferReleasedShape(Lookup("ViT-B/16"), ShapesOf(ReleasedLayout(b16, 21843, 224)), "f", 0);
  ASSERT_TRUE(shape.ok()) << shape.status().ToString();
  EXPECT_EQ(shape->num_classes, 21843);
  EXPECT_EQ(shape->resolution, 224);
  EXPECT_EQ(shape->pre_logits, 768);
  shape = InferReleasedShape(Lookup("ViT-B/16"),
                             ShapesOf(ReleasedLayout(Lookup("ViT-B/16"), 1000, 384)), "f", 0);
  ASSERT_TRUE(shape.ok()) << shape.status().ToString();
  EXPECT_EQ(shape->resolution, 384);
  EXPECT_EQ(shape->pre_logits, 0);

  // ResNets run at any size: the caller's resolution.
  shape = InferReleasedShape(Lookup("R50x1"), ShapesOf(ReleasedLayout(Lookup("R50x1"), 21843, 224)),
                             "bit.npz", 128);
  ASSERT_TRUE(shape.ok()) << shape.status().ToString();
  EXPECT_EQ(shape->num_classes, 21843);
  EXPECT_EQ(shape->resolution, 128);

  // A file of the other layout says what it is.
  Expected<ReleasedFileShape> wrong = InferReleasedShape(
      Lookup("ViT-B/16"), ShapesOf(ReleasedLayout(Lookup("R50x1"), 1000, 224)), "bit.npz", 224);
  ASSERT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.status().message().find("looks like a BiT ResNet file"), std::string::npos)
      << wrong.status().message();
  wrong = InferReleasedShape(
      Lookup("R50x1"), ShapesOf(ReleasedLayout(Lookup("ViT-B/16"), 1000, 224)), "vit.npz", 224);
  ASSERT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.status().message().find("looks like a ViT or hybrid file"), std::string::npos)
      << wrong.status().message();
}

TEST(NpzLayoutTest, ComparingAFileListsEveryDifference) {
  const std::vector<NpzEntry> layout = ReleasedLayout(Lookup("ViT-Mu/7"), 10, 28);
  Shapes shapes = ShapesOf(layout);
  EXPECT_TRUE(CompareWithLayout(layout, shapes).empty());
  shapes.erase("cls");
  shapes["extra/kernel"] = {3};
  shapes["head/kernel"] = {64, 1000};
  const NpzMismatch mismatch = CompareWithLayout(layout, shapes);
  EXPECT_EQ(mismatch.Describe(),
            "missing keys: cls; unexpected keys: extra/kernel; wrong shapes: head/kernel is "
            "(64, 1000) in the file, (64, 10) in the model");
}

TEST(NpzLayoutTest, ShapesComeFromHeadersAlone) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("vitscale_npz_layout_test_" + std::to_string(::getpid()) + ".npz"))
                               .string();
  NpyArray a;
  a.shape = {2, 3};
  a.data.assign(6 * 4, '\0');
  NpyArray b;
  b.dtype = NpyDtype::kFloat16;
  b.shape = {5};
  b.data.assign(5 * 2, '\0');
  ASSERT_TRUE(WriteNpz(path, {{"a/kernel", a}, {"b", b}}).ok());
  Expected<Shapes> shapes = ReadNpzShapes(path);
  ASSERT_TRUE(shapes.ok()) << shapes.status().ToString();
  EXPECT_EQ(*shapes, (Shapes{{"a/kernel", {2, 3}}, {"b", {5}}}));

  // A member whose data does not match its header is still caught.
  b.data.resize(4);
  ASSERT_TRUE(WriteNpz(path, {{"b", b}}).ok());
  EXPECT_EQ(ReadNpzShapes(path).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(ReadNpzShapes(path + ".absent").status().code(), StatusCode::kNotFound);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace vitscale::models
