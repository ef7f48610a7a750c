#include "trainer/few_shot.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

namespace vitscale::trainer {
namespace {

TEST(KShotIndicesTest, PerClassSeededAndNested) {
  std::vector<int32_t> labels;
  for (int i = 0; i < 60; ++i) labels.push_back(i % 3);
  auto five = KShotIndices(labels, 3, 5, 11);
  auto one = KShotIndices(labels, 3, 1, 11);
  ASSERT_TRUE(five.ok() && one.ok());
  ASSERT_EQ(five->size(), 15u);
  for (int c = 0; c < 3; ++c) {
    for (int k = 0; k < 5; ++k) EXPECT_EQ(labels[(*five)[c * 5 + k]], c);
    EXPECT_EQ((*one)[c], (*five)[c * 5]);  // the 1-shot draw is inside the 5-shot draw
  }
  EXPECT_EQ(std::set<uint32_t>(five->begin(), five->end()).size(), 15u);
  EXPECT_EQ(*KShotIndices(labels, 3, 5, 11), *five);
  EXPECT_NE(*KShotIndices(labels, 3, 5, 12), *five);
  auto too_many = KShotIndices(labels, 3, 21, 0);
  ASSERT_FALSE(too_many.ok());
  EXPECT_NE(too_many.status().message().find("class 0 has 20"), std::string::npos);
}

// The closed form against an explicit inverse of the normal equations, in both solve forms.
void ExpectMatchesDirectSolve(int64_t n, int64_t d) {
  torch::manual_seed(n * 100 + d);
  torch::Tensor f = torch::randn({n, d}, torch::kFloat64) * 3 + 1;
  torch::Tensor labels = torch::randint(0, 4, {n});
  const double l2 = 1024;
  RidgeClassifier c = FitRidge(f, labels, 4, l2);
  torch::Tensor x = (f - f.mean(0)) / (f.std(0, false) + kStdEpsilon);
  x = torch::cat({x, torch::ones({n, 1}, torch::kFloat64)}, 1);
  torch::Tensor y = torch::full({n, 4}, -1.0, torch::kFloat64);
  y.scatter_(1, labels.unsqueeze(1), 1.0);
  torch::Tensor direct =
      torch::inverse(x.t().mm(x) + l2 * torch::eye(d + 1, torch::kFloat64)).mm(x.t()).mm(y);
  EXPECT_TRUE(torch::allclose(c.weights, direct, 1e-9, 1e-10)) << "n=" << n << " d=" << d;
}

TEST(FitRidgeTest, MatchesDirectSolvePrimalAndDual) {
  ExpectMatchesDirectSolve(200, 16);  // primal: d + 1 <= n
  ExpectMatchesDirectSolve(10, 64);   // dual: n < d + 1 (few shots, wide features)
}

TEST(FitRidgeTest, PlantedSeparableProblemIsSolved) {
  // 5 classes, 32-d features around well separated class centres; 10 shots each.
  torch::manual_seed(3);
  torch::Tensor centres = torch::randn({5, 32}) * 4;
  auto sample = [&](int64_t per_class) {
    torch::Tensor labels = torch::arange(5).repeat_interleave(per_class);
    torch::Tensor f = centres.index_select(0, labels) + torch::randn({5 * per_class, 32});
    return std::make_pair(f, labels);
  };
  auto [train_f, train_y] = sample(10);
  auto [test_f, test_y] = sample(200);
  RidgeClassifier c = FitRidge(train_f, train_y, 5, 1024);
  EXPECT_GE(RidgeAccuracy(c, test_f, test_y), 0.99);
  // And random labels are not: the test can fail.
  RidgeClassifier shuffled = FitRidge(train_f, torch::randint(0, 5, {50}), 5, 1024);
  EXPECT_LT(RidgeAccuracy(shuffled, test_f, test_y), 0.6);
}

}  // namespace
}  // namespace vitscale::trainer
