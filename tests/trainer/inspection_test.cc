// The inspection views: attention distance and rollout checked on attention patterns whose
// answers are known, and every view of a ViT and a hybrid written with the shapes it promises.
#include "trainer/inspection.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/image_codec.h"
#include "models/zoo.h"

namespace vitscale::trainer {
namespace {

namespace fs = std::filesystem;

// Attention weights (1, heads, 1 + g*g, 1 + g*g) where every token attends to one fixed token.
torch::Tensor Attending(int64_t grid, int64_t heads, int64_t key) {
  const int64_t tokens = 1 + grid * grid;
  torch::Tensor w = torch::zeros({1, heads, tokens, tokens});
  w.select(3, key).fill_(1.0);
  return w;
}

TEST(InspectionTest, MeanAttentionDistanceOfKnownPatterns) {
  // Every patch attending to itself: distance 0. The [class] token is left out.
  const int64_t grid = 3;
  torch::Tensor self = torch::eye(1 + grid * grid).expand({2, 4, 10, 10});
  EXPECT_TRUE(torch::allclose(MeanAttentionDistance(self, grid, 1, 16.0),
                              torch::zeros({4}, torch::kDouble)));
  // Every patch attending to the top-left patch (token 1) of a 3x3 grid of 16-pixel patches:
  // the mean over queries of their distance to it.
  double expected = 0;
  for (int r = 0; r < grid; ++r) {
    for (int c = 0; c < grid; ++c) expected += 16.0 * std::sqrt(r * r + c * c);
  }
  expected /= grid * grid;
  torch::Tensor corner = MeanAttentionDistance(Attending(grid, 2, 1), grid, 1, 16.0);
  EXPECT_NEAR(corner[0].item<double>(), expected, 1e-9);
  EXPECT_NEAR(corner[1].item<double>(), expected, 1e-9);
  // Weight on the [class] token is renormalised away: half on it, half on the corner.
  torch::Tensor mixed = 0.5 * Attending(grid, 1, 0) + 0.5 * Attending(grid, 1, 1);
  EXPECT_NEAR(MeanAttentionDistance(mixed, grid, 1, 16.0)[0].item<double>(), expected, 1e-9);
}

TEST(InspectionTest, AttentionRolloutOfKnownPatterns) {
  // Attention to oneself everywhere rolls out to the identity.
  torch::Tensor self = torch::eye(5).expand({1, 2, 5, 5});
  EXPECT_TRUE(torch::allclose(AttentionRollout({self, self, self}),
                              torch::eye(5, torch::kDouble).unsqueeze(0)));
  // One layer attending to token 2: (A + I) / 2, row-normalised.
  torch::Tensor to_two = torch::zeros({1, 1, 3, 3});
  to_two.select(3, 2).fill_(1.0);
  torch::Tensor one = AttentionRollout({to_two});
  EXPECT_NEAR(one[0][0][0].item<double>(), 0.5, 1e-12);
  EXPECT_NEAR(one[0][0][2].item<double>(), 0.5, 1e-12);
  EXPECT_NEAR(one[0][2][2].item<double>(), 1.0, 1e-12);
  // Two such layers: the product, later layers on the left.
  torch::Tensor two = AttentionRollout({to_two, to_two});
  EXPECT_TRUE(torch::allclose(two[0], one[0].matmul(one[0])));
  for (int64_t r = 0; r < 3; ++r) EXPECT_NEAR(two[0][r].sum().item<double>(), 1.0, 1e-12);
}

class InspectTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("vitscale_inspection_test_" + std::to_string(::getpid()) + "_" +
            testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  nlohmann::json ReadJson(const std::string& name) {
    std::ifstream in(dir_ / name);
    EXPECT_TRUE(in.good()) << name;
    return nlohmann::json::parse(in);
  }
  void ExpectPng(const std::string& name) {
    std::ifstream in(dir_ / name, std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    Expected<data::Image> image = data::DecodePng(bytes.str(), name);
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    EXPECT_GT(image->width, 8);
    EXPECT_GT(image->height, 8);
  }

  fs::path dir_;
};

TEST_F(InspectTest, EveryViewOfAViTAndAHybridHasItsShape) {
  torch::manual_seed(0);
  for (const char* name : {"ViT-Mu/7", "R11s+ViT-Mu/4"}) {
    SCOPED_TRACE(name);
    models::Model model = *models::BuildModel(name, 10, 28);
    auto* vit = dynamic_cast<models::ViTImpl*>(model.get());
    ASSERT_NE(vit, nullptr);
    InspectionOptions options;
    options.dir = dir_.string();
    options.prefix = name[0] == 'V' ? "vit" : "hybrid";
    std::vector<std::string> announced;
    Expected<std::vector<InspectionView>> views =
        Inspect(*vit, torch::randn({6, 3, 28, 28}), options, [&](int index, int count) {
          announced.push_back(std::to_string(index + 1) + "/" + std::to_string(count));
          return Status::Ok();
        });
    ASSERT_TRUE(views.ok()) << views.status().ToString();
    const bool is_vit = options.prefix == "vit";
    ASSERT_EQ(views->size(), is_vit ? 4u : 3u);
    EXPECT_EQ(announced.back(), is_vit ? "4/4" : "3/3");
    const std::string p = options.prefix + "-";
    const int64_t grid = is_vit ? 4 : 7;  // 28/7 patches, or the stride-4 backbone's 7x7 map
    if (is_vit) {
      nlohmann::json filters = ReadJson(p + "filters.json");
      EXPECT_EQ(filters["components"].size(), 28u);  // min(28, D = 64, 3 x 7 x 7)
      EXPECT_EQ(filters["components"][0].size(), 3u);
      EXPECT_EQ(filters["components"][0][0].size(), 7u);
      double explained = 0;
      for (double v : filters["explained_variance"]) explained += v;
      EXPECT_GT(explained, 0.5);
      EXPECT_LE(explained, 1.0 + 1e-9);
      ExpectPng(p + "filters.png");
    } else {
      EXPECT_FALSE(fs::exists(dir_ / (p + "filters.json")));
    }
    nlohmann::json similarity = ReadJson(p + "position-similarity.json");
    EXPECT_EQ(similarity["grid"], grid);
    ASSERT_EQ(similarity["similarity"].size(), static_cast<size_t>(grid * grid));
    EXPECT_NEAR(similarity["similarity"][3][3].get<double>(), 1.0, 1e-9);  // cos(x, x)
    ExpectPng(p + "position-similarity.png");

    nlohmann::json distance = ReadJson(p + "attention-distance.json");
    EXPECT_EQ(distance["layers"], 4);
    EXPECT_EQ(distance["heads"], 4);
    EXPECT_EQ(distance["pixels_per_token"], is_vit ? 7 : 4);
    const double longest = std::sqrt(2.0) * 28;
    for (const auto& layer : distance["distance"]) {
      for (double d : layer) {
        EXPECT_GT(d, 0.0);
        EXPECT_LT(d, longest);
      }
    }
    std::ifstream svg(dir_ / (p + "attention-distance.svg"));
    std::stringstream text;
    text << svg.rdbuf();
    EXPECT_EQ(text.str().rfind("<svg", 0), 0u);
    size_t dots = 0;
    for (size_t at = 0; (at = text.str().find("<circle", at)) != std::string::npos; ++at) ++dots;
    EXPECT_EQ(dots, 16u);  // a dot per head and layer

    nlohmann::json rollout = ReadJson(p + "attention-rollout.json");
    EXPECT_EQ(rollout["images"], 4);
    ASSERT_EQ(rollout["maps"].size(), 4u);
    EXPECT_EQ(rollout["maps"][0].size(), static_cast<size_t>(grid));
    double largest = 0;
    for (const auto& row : rollout["maps"][0]) {
      for (double v : row) largest = std::max(largest, v);
    }
    EXPECT_NEAR(largest, 1.0, 1e-9);  // each map scaled to its maximum
    ExpectPng(p + "attention-rollout.png");
  }
}

}  // namespace
}  // namespace vitscale::trainer
