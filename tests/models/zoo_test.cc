// Every registered model: built from the registry, run forward and backward on the CPU, its
// parameter count and counted multiply-adds equal to the registry's analytic numbers.
#include "models/zoo.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "models/macs.h"
#include "models/registry.h"
#include "models/vit.h"

namespace vitscale::models {
namespace {

// Models above this are checked analytically only (ViT-B, R50x1/x2 and the R50+ViT-B hybrids
// run; L, H and the wide or deep BiT nets do not fit a CPU test's time).
constexpr int64_t kMaxRunnableParams = 120'000'000;

int64_t CountParameters(ModelImpl& model) {
  int64_t n = 0;
  for (const auto& p : model.parameters()) n += p.numel();
  return n;
}

// The smallest resolution that still gives a 4x4 token grid (ViT, hybrid) or a 2x2 final map
// (ResNet), never above the name's reference resolution.
int TestResolution(const ModelConfig& config) {
  const int reference = ReferenceInput(config).resolution;
  int stride = 1;
  switch (config.family) {
    case Family::kViT:
      stride = config.transformer.patch;
      break;
    case Family::kHybrid:
      stride = config.transformer.patch * ResNetStride(config.resnet);
      break;
    case Family::kResNet:
      return std::min(reference, 2 * ResNetStride(config.resnet));
  }
  return std::min(reference, 4 * stride);
}

std::string TestName(const testing::TestParamInfo<std::string>& info) {
  std::string name;
  for (char c : info.param) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

class EveryModelTest : public testing::TestWithParam<std::string> {};

TEST_P(EveryModelTest, BuildsRunsAndMatchesTheRegistry) {
  torch::manual_seed(0);
  Expected<ModelConfig> config = LookupModel(GetParam());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const InputShape reference = ReferenceInput(*config);
  ASSERT_TRUE(CheckShape(*config, reference.resolution, reference.num_classes).ok());
  const ModelCost reference_cost =
      ComputeCost(*config, reference.resolution, reference.num_classes);
  ASSERT_GT(reference_cost.params, 0);
  ASSERT_GT(reference_cost.forward_macs, 0);
  if (reference_cost.params > kMaxRunnableParams) {
    RecordProperty("checked", "analytically only");
    return;
  }

  const int resolution = TestResolution(*config);
  const int classes = reference.num_classes;
  Expected<Model> built = BuildModel(GetParam(), classes, resolution);
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  Model model = *built;
  const ModelCost cost = ComputeCost(*config, resolution, classes);
  EXPECT_EQ(CountParameters(*model), cost.params) << "at resolution " << resolution;
  EXPECT_EQ(model->name(), GetParam());

  constexpr int kBatch = 2;
  torch::Tensor images = torch::randn({kBatch, 3, resolution, resolution});
  {
    model->eval();
    torch::NoGradGuard no_grad;
    MacCountScope count;
    torch::Tensor logits = model->Forward(images);
    EXPECT_EQ(count.macs(), kBatch * cost.forward_macs) << "at resolution " << resolution;
    ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{kBatch, classes}));
    // The head starts at zero, as the paper's code initialises it.
    EXPECT_EQ(logits.abs().max().item<float>(), 0.0f);
    EXPECT_EQ(model->Features(images).size(1), model->FeatureDim());
  }

  // With a non-zero head every parameter gets a finite gradient.
  model->train();
  for (auto& item : model->named_parameters()) {
    if (item.key().rfind("head.", 0) == 0) {
      torch::NoGradGuard no_grad;
      item.value().normal_(0.0, 0.02);
    }
  }
  torch::Tensor loss =
      torch::cross_entropy_loss(model->Forward(images), torch::tensor({0, classes - 1}));
  loss.backward();
  ASSERT_TRUE(std::isfinite(loss.item<float>()));
  for (const auto& item : model->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_TRUE(torch::isfinite(item.value().grad()).all().item<bool>()) << item.key();
  }
  // The first parameter (patch embedding or stem) is the far end of the backward pass.
  EXPECT_GT(model->parameters().front().grad().abs().sum().item<float>(), 0.0f);
}

INSTANTIATE_TEST_SUITE_P(Registry, EveryModelTest, testing::ValuesIn(ModelNames()), TestName);

TEST(ZooTest, PreLogitsAndGlobalPoolingAreCountedToo) {
  for (Pooling pooling : {Pooling::kClassToken, Pooling::kGlobalAverage}) {
    ModelConfig config = *LookupModel("ViT-Mu/7");
    config.pre_logits = 48;
    config.pooling = pooling;
    Expected<Model> model = BuildModel(config, 10, 28);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    const ModelCost cost = ComputeCost(config, 28, 10);
    EXPECT_EQ(CountParameters(**model), cost.params);
    (*model)->eval();
    torch::NoGradGuard no_grad;
    MacCountScope count;
    torch::Tensor features = (*model)->Features(torch::randn({1, 3, 28, 28}));
    EXPECT_EQ(features.size(1), 48);
    EXPECT_LE(features.abs().max().item<float>(), 1.0f);  // tanh
    EXPECT_EQ(count.macs() + 48 * 10, cost.forward_macs);
  }
}

TEST(ZooTest, OddFeatureMapSizesAreCountedLikeTheRegistry) {
  // 100 → 50 → 25 → 13 → 7 → 4 exercises the rounding of every strided layer.
  for (const auto& [name, resolution] :
       {std::pair<const char*, int>{"R50x1", 100}, {"R20s", 27}, {"R11s", 9}}) {
    SCOPED_TRACE(name);
    const ModelConfig config = *LookupModel(name);
    Model model = *BuildModel(config, 10, resolution);
    torch::NoGradGuard no_grad;
    MacCountScope count;
    model->Forward(torch::randn({1, 3, resolution, resolution}));
    EXPECT_EQ(count.macs(), ComputeCost(config, resolution, 10).forward_macs);
  }
}

TEST(ZooTest, MacsAreCountedOnlyInsideAScope) {
  Model model = *BuildModel("ViT-Mu/7", 10, 28);
  torch::NoGradGuard no_grad;
  model->Forward(torch::randn({1, 3, 28, 28}));
  MacCountScope count;
  EXPECT_EQ(count.macs(), 0);
}

TEST(ZooTest, ReplaceHeadGivesZeroLogitsAndDropsPreLogits) {
  ModelConfig config = *LookupModel("ViT-Mu/4");
  config.pre_logits = 32;
  Model model = *BuildModel(config, 10, 28);
  ASSERT_EQ(model->FeatureDim(), 32);
  for (auto& p : model->parameters()) {
    torch::NoGradGuard no_grad;
    p.normal_(0.0, 0.1);
  }
  torch::Tensor images = torch::randn({3, 3, 28, 28});
  ASSERT_GT(model->Forward(images).abs().max().item<float>(), 0.0f);

  ASSERT_TRUE(model->ReplaceHead(7).ok());
  EXPECT_EQ(model->num_classes(), 7);
  EXPECT_EQ(model->FeatureDim(), 64);
  EXPECT_EQ(model->config().pre_logits, 0);
  torch::Tensor logits = model->Forward(images);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{3, 7}));
  EXPECT_EQ(logits.abs().max().item<float>(), 0.0f);
  config.pre_logits = 0;
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  EXPECT_EQ(params, ComputeCost(config, 28, 7).params);

  Model resnet = *BuildModel("R11s", 10, 28);
  ASSERT_TRUE(resnet->ReplaceHead(3).ok());
  EXPECT_EQ(resnet->Forward(torch::randn({2, 3, 28, 28})).sizes(), (std::vector<int64_t>{2, 3}));

  Status bad = model->ReplaceHead(0);
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("num_classes"), std::string::npos) << bad.message();
  EXPECT_EQ(model->num_classes(), 7);
}

TEST(ZooTest, SameSizeInterpolationIsTheIdentity) {
  torch::Tensor pos = torch::randn({1, 1 + 7 * 7, 16});
  EXPECT_TRUE(torch::equal(ResizePositionGrid(pos, 1, 7), pos));
  torch::Tensor gap = torch::randn({1, 4 * 4, 8});
  EXPECT_TRUE(torch::equal(ResizePositionGrid(gap, 0, 4), gap));

  Model model = *BuildModel("ViT-Mu/4", 10, 28);
  auto& vit = dynamic_cast<ViTImpl&>(*model);
  torch::Tensor before = vit.pos_embedding.clone();
  ASSERT_TRUE(model->ResizePositionEmbedding(28).ok());
  EXPECT_TRUE(torch::equal(vit.pos_embedding, before));
}

TEST(ZooTest, InterpolationKeepsTheClassEntryAndSmoothFields) {
  // A grid that is constant per channel stays constant; the [class] entry is untouched.
  torch::Tensor pos = torch::ones({1, 1 + 4 * 4, 3}) * torch::tensor({1.0f, 2.0f, 3.0f});
  pos.index_put_({0, 0}, torch::tensor({-5.0f, 6.0f, 7.0f}));
  torch::Tensor resized = ResizePositionGrid(pos, 1, 8);
  ASSERT_EQ(resized.sizes(), (std::vector<int64_t>{1, 1 + 8 * 8, 3}));
  EXPECT_TRUE(torch::equal(resized[0][0], pos[0][0]));
  EXPECT_TRUE(torch::allclose(resized.narrow(1, 1, 64),
                              torch::ones({1, 64, 3}) * torch::tensor({1.0f, 2.0f, 3.0f})));
}

TEST(ZooTest, ResizedModelsRunForward) {
  struct Case {
    const char* name;
    int classes, from, to;
    int64_t tokens;  // position embeddings after the resize
  };
  for (const Case& c :
       {Case{"ViT-Mu/4", 10, 28, 56, 1 + 14 * 14}, Case{"ViT-B/32", 1000, 224, 384, 1 + 12 * 12},
        Case{"R11s+ViT-Mu/4", 10, 28, 56, 1 + 14 * 14}}) {
    SCOPED_TRACE(c.name);
    Model model = *BuildModel(c.name, c.classes, c.from);
    Status resized = model->ResizePositionEmbedding(c.to);
    ASSERT_TRUE(resized.ok()) << resized.ToString();
    EXPECT_EQ(model->resolution(), c.to);
    auto& vit = dynamic_cast<ViTImpl&>(*model);
    EXPECT_EQ(vit.pos_embedding.size(1), c.tokens);
    torch::NoGradGuard no_grad;
    EXPECT_EQ(model->Forward(torch::randn({1, 3, c.to, c.to})).sizes(),
              (std::vector<int64_t>{1, c.classes}));
  }
  Model resnet = *BuildModel("R20s", 10, 28);
  ASSERT_TRUE(resnet->ResizePositionEmbedding(56).ok());
  EXPECT_EQ(resnet->resolution(), 56);
}

TEST(ZooTest, BadInputIsAClearError) {
  Expected<Model> unknown = BuildModel("ViT-B/61", 1000, 224);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("'ViT-B/16'"), std::string::npos)
      << unknown.status().message();

  Expected<Model> indivisible = BuildModel("ViT-B/16", 1000, 225);
  ASSERT_FALSE(indivisible.ok());
  EXPECT_EQ(indivisible.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(indivisible.status().message().find("225"), std::string::npos);
  EXPECT_NE(indivisible.status().message().find("16"), std::string::npos);

  for (int classes : {0, -3}) {
    Expected<Model> no_classes = BuildModel("R11s", classes, 28);
    ASSERT_FALSE(no_classes.ok());
    EXPECT_NE(no_classes.status().message().find("num_classes"), std::string::npos);
  }

  Model model = *BuildModel("ViT-Mu/4", 10, 28);
  Status resize = model->ResizePositionEmbedding(30);
  EXPECT_EQ(resize.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(resize.message().find("30"), std::string::npos) << resize.message();
  EXPECT_EQ(model->resolution(), 28);
}

}  // namespace
}  // namespace vitscale::models
