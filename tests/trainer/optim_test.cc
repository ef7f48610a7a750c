#include "trainer/optim.h"

#include <gtest/gtest.h>

#include <cmath>

namespace vitscale::trainer {
namespace {

TEST(LearningRateTest, LinearWarmupThenLinearDecay) {
  Schedule s{1.0, 4, 12, Decay::kLinear, 0.0};
  EXPECT_DOUBLE_EQ(LearningRate(s, 0), 0.25);
  EXPECT_DOUBLE_EQ(LearningRate(s, 1), 0.5);
  EXPECT_DOUBLE_EQ(LearningRate(s, 3), 1.0);
  EXPECT_DOUBLE_EQ(LearningRate(s, 4), 1.0);   // decay starts at base
  EXPECT_DOUBLE_EQ(LearningRate(s, 8), 0.5);   // halfway through the 8 decay steps
  EXPECT_DOUBLE_EQ(LearningRate(s, 12), 0.0);
  EXPECT_DOUBLE_EQ(LearningRate(s, 50), 0.0);  // stays at the end value
}

TEST(LearningRateTest, CosineDecayToEndValue) {
  Schedule s{2.0, 0, 10, Decay::kCosine, 0.2};
  EXPECT_DOUBLE_EQ(LearningRate(s, 0), 2.0);
  EXPECT_NEAR(LearningRate(s, 5), 0.2 + 1.8 * 0.5, 1e-12);
  EXPECT_NEAR(LearningRate(s, 2), 0.2 + 1.8 * 0.5 * (1 + std::cos(M_PI * 0.2)), 1e-12);
  EXPECT_NEAR(LearningRate(s, 10), 0.2, 1e-12);
}

TEST(LearningRateTest, ConstantAfterWarmupAndDegenerateLengths) {
  Schedule constant{0.1, 2, 100, Decay::kConstant, 0.0};
  EXPECT_DOUBLE_EQ(LearningRate(constant, 0), 0.05);
  EXPECT_DOUBLE_EQ(LearningRate(constant, 99), 0.1);
  Schedule all_warmup{0.1, 10, 10, Decay::kLinear, 0.0};
  EXPECT_DOUBLE_EQ(LearningRate(all_warmup, 9), 0.1);
  EXPECT_DOUBLE_EQ(LearningRate(all_warmup, 10), 0.0);
}

TEST(ParseTest, NamesRoundTripAndUnknownNamesSayWhatToUse) {
  EXPECT_EQ(*ParseDecay("cosine"), Decay::kCosine);
  EXPECT_EQ(*ParseOptimizer("sgd"), OptimizerKind::kSgd);
  Expected<Decay> bad = ParseDecay("cosin");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("linear, cosine or constant"), std::string::npos);
}

TEST(ClipGradGlobalNormTest, ScalesToMaxNormAndReportsPreClipNorm) {
  torch::Tensor a = torch::zeros({2}, torch::requires_grad());
  torch::Tensor b = torch::zeros({1}, torch::requires_grad());
  torch::Tensor unused = torch::zeros({3}, torch::requires_grad());
  a.mutable_grad() = torch::tensor({3.0f, 0.0f});
  b.mutable_grad() = torch::tensor({4.0f});
  std::vector<torch::Tensor> params = {a, b, unused};
  EXPECT_DOUBLE_EQ(ClipGradGlobalNorm(params, 0.0), 5.0);  // 0: measure only
  EXPECT_TRUE(torch::equal(a.grad(), torch::tensor({3.0f, 0.0f})));
  EXPECT_DOUBLE_EQ(ClipGradGlobalNorm(params, 10.0), 5.0);  // below the cap: untouched
  EXPECT_TRUE(torch::equal(b.grad(), torch::tensor({4.0f})));
  EXPECT_DOUBLE_EQ(ClipGradGlobalNorm(params, 1.0), 5.0);
  EXPECT_TRUE(torch::allclose(a.grad(), torch::tensor({0.6f, 0.0f})));
  EXPECT_TRUE(torch::allclose(b.grad(), torch::tensor({0.8f})));
  EXPECT_NEAR(ClipGradGlobalNorm(params, 0.0), 1.0, 1e-6);
}

TEST(SmoothedCrossEntropyTest, MatchesHandComputedValues) {
  torch::Tensor logits = torch::tensor({{2.0, 0.0, -1.0}, {0.5, 0.5, 0.5}}, torch::kFloat64);
  torch::Tensor labels = torch::tensor({0, 2});
  torch::Tensor log_p = torch::log_softmax(logits, 1);
  const double plain = -(log_p[0][0].item<double>() + log_p[1][2].item<double>()) / 2;
  EXPECT_NEAR(SmoothedCrossEntropy(logits, labels, 0.0).item<double>(), plain, 1e-12);
  EXPECT_NEAR(SmoothedCrossEntropy(logits, labels, 0.0).item<double>(),
              torch::nn::functional::cross_entropy(logits, labels).item<double>(), 1e-12);
  // With smoothing 0.3 the target of row 0 is (0.8, 0.1, 0.1).
  double smoothed = 0;
  for (int row = 0; row < 2; ++row) {
    for (int k = 0; k < 3; ++k) {
      const double target = (k == labels[row].item<int64_t>() ? 0.7 : 0.0) + 0.1;
      smoothed -= target * log_p[row][k].item<double>() / 2;
    }
  }
  EXPECT_NEAR(SmoothedCrossEntropy(logits, labels, 0.3).item<double>(), smoothed, 1e-12);
}

TEST(MakeOptimizerTest, DecaysMatricesOnlyAndFollowsSetLearningRate) {
  torch::Tensor w = torch::ones({2, 2}, torch::requires_grad());
  torch::Tensor bias = torch::ones({2}, torch::requires_grad());
  OptimizerConfig config;
  config.weight_decay = 0.5;
  auto optimizer = MakeOptimizer(config, {w, bias});
  SetLearningRate(*optimizer, 0.1);
  w.mutable_grad() = torch::zeros({2, 2});
  bias.mutable_grad() = torch::zeros({2});
  optimizer->step();
  // Zero gradients: AdamW moves only by decoupled decay, w *= 1 - lr * wd.
  EXPECT_TRUE(torch::allclose(w, torch::full({2, 2}, 0.95)));
  EXPECT_TRUE(torch::equal(bias, torch::ones({2})));

  config.kind = OptimizerKind::kSgd;
  config.weight_decay = 0.0;
  torch::Tensor v = torch::zeros({1}, torch::requires_grad());
  auto sgd = MakeOptimizer(config, {v});
  SetLearningRate(*sgd, 1.0);
  for (int i = 0; i < 2; ++i) {
    v.mutable_grad() = torch::ones({1});
    sgd->step();
  }
  // Momentum 0.9: steps of 1 then 1.9.
  EXPECT_NEAR(v.item<double>(), -2.9, 1e-6);
}

}  // namespace
}  // namespace vitscale::trainer
