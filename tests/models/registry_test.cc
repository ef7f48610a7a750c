#include "models/registry.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace vitscale::models {
namespace {

ModelConfig Lookup(const std::string& name) {
  Expected<ModelConfig> config = LookupModel(name);
  EXPECT_TRUE(config.ok()) << name << ": " << config.status().ToString();
  return config.ok() ? config.value() : ModelConfig{};
}

ModelCost Cost(const std::string& name, int resolution, int num_classes) {
  ModelConfig config = Lookup(name);
  Status shape = CheckShape(config, resolution, num_classes);
  EXPECT_TRUE(shape.ok()) << shape.ToString();
  return ComputeCost(config, resolution, num_classes);
}

TEST(RegistryTest, EveryNameDecodesAndRunsAtItsReferenceInput) {
  std::set<std::string> seen;
  for (const std::string& name : ModelNames()) {
    EXPECT_TRUE(seen.insert(name).second) << "duplicate " << name;
    ModelConfig config = Lookup(name);
    EXPECT_EQ(config.name, name);
    InputShape input = ReferenceInput(config);
    ASSERT_TRUE(CheckShape(config, input.resolution, input.num_classes).ok()) << name;
    ModelCost cost = ComputeCost(config, input.resolution, input.num_classes);
    EXPECT_GT(cost.params, 0) << name;
    EXPECT_GT(cost.forward_macs, 0) << name;
  }
  EXPECT_EQ(ModelNames().size(), 37u);
}

TEST(RegistryTest, PaperStudyNamesComeFirst) {
  const std::vector<std::string> paper = {
      "ViT-B/32", "ViT-B/16",     "ViT-L/32",     "ViT-L/16",     "ViT-H/14",
      "R50x1",    "R50x2",        "R101x1",       "R152x1",       "R152x2",
      "R200x3",   "R50+ViT-B/32", "R50+ViT-B/16", "R50+ViT-L/32", "R50+ViT-L/16"};
  ASSERT_GE(ModelNames().size(), paper.size());
  for (size_t i = 0; i < paper.size(); ++i) EXPECT_EQ(ModelNames()[i], paper[i]);
  for (const char* other : {"ViT-B/14", "ViT-L/14", "ViT-H/16", "ViT-H/32"}) {
    EXPECT_TRUE(LookupModel(other).ok()) << other;
  }
}

TEST(RegistryTest, DecodesViT) {
  ModelConfig b16 = Lookup("ViT-B/16");
  EXPECT_EQ(b16.family, Family::kViT);
  EXPECT_EQ(b16.transformer.depth, 12);
  EXPECT_EQ(b16.transformer.width, 768);
  EXPECT_EQ(b16.transformer.mlp_dim, 3072);
  EXPECT_EQ(b16.transformer.heads, 12);
  EXPECT_EQ(b16.transformer.patch, 16);
  EXPECT_EQ(b16.pooling, Pooling::kClassToken);
  EXPECT_EQ(b16.pre_logits, 0);

  ModelConfig h14 = Lookup("ViT-H/14");
  EXPECT_EQ(h14.transformer.depth, 32);
  EXPECT_EQ(h14.transformer.width, 1280);
  EXPECT_EQ(h14.transformer.mlp_dim, 5120);
  EXPECT_EQ(h14.transformer.heads, 16);
  EXPECT_EQ(h14.transformer.patch, 14);

  ModelConfig mu = Lookup("ViT-Mu/7");
  EXPECT_EQ(mu.transformer.depth, 4);
  EXPECT_EQ(mu.transformer.width, 64);
  EXPECT_EQ(mu.transformer.mlp_dim, 256);
  EXPECT_EQ(mu.transformer.heads, 4);
  EXPECT_EQ(mu.transformer.patch, 7);
  ModelConfig mi = Lookup("ViT-Mi/4");
  EXPECT_EQ(mi.transformer.depth, 6);
  EXPECT_EQ(mi.transformer.width, 128);
  EXPECT_EQ(mi.transformer.mlp_dim, 512);
  EXPECT_EQ(mi.transformer.heads, 4);
  EXPECT_EQ(mi.transformer.patch, 4);
  EXPECT_EQ(Lookup("ViT-Ti/4").transformer.heads, 3);
  EXPECT_EQ(Lookup("ViT-S/7").transformer.width, 384);
}

TEST(RegistryTest, DecodesResNets) {
  ModelConfig r50 = Lookup("R50x1");
  EXPECT_EQ(r50.family, Family::kResNet);
  EXPECT_EQ(r50.resnet.blocks, (std::vector<int>{3, 4, 6, 3}));
  EXPECT_EQ(r50.resnet.width_factor, 1);
  EXPECT_EQ(r50.resnet.base_width, 64);
  EXPECT_FALSE(r50.resnet.small_stem);
  EXPECT_EQ(r50.resnet.groupnorm_groups, 32);
  EXPECT_EQ(ResNetStride(r50.resnet), 32);
  EXPECT_EQ(ResNetOutputChannels(r50.resnet), 2048);
  EXPECT_EQ(Lookup("R101x1").resnet.blocks, (std::vector<int>{3, 4, 23, 3}));
  EXPECT_EQ(Lookup("R152x2").resnet.blocks, (std::vector<int>{3, 8, 36, 3}));
  EXPECT_EQ(Lookup("R152x2").resnet.width_factor, 2);
  ModelConfig r200 = Lookup("R200x3");
  EXPECT_EQ(r200.resnet.blocks, (std::vector<int>{3, 24, 36, 3}));
  EXPECT_EQ(ResNetOutputChannels(r200.resnet), 6144);

  ModelConfig r20s = Lookup("R20s");
  EXPECT_EQ(r20s.resnet.blocks, (std::vector<int>{2, 2, 2}));
  EXPECT_TRUE(r20s.resnet.small_stem);
  EXPECT_EQ(r20s.resnet.base_width, 16);
  EXPECT_EQ(r20s.resnet.groupnorm_groups, 8);
  EXPECT_EQ(r20s.resnet.width_factor, 1);
  EXPECT_EQ(ResNetStride(r20s.resnet), 4);
  EXPECT_EQ(ResNetOutputChannels(r20s.resnet), 256);
  EXPECT_EQ(Lookup("R11s").resnet.blocks, (std::vector<int>{1, 1, 1}));
  EXPECT_EQ(Lookup("R29s").resnet.blocks, (std::vector<int>{3, 3, 3}));
  EXPECT_EQ(Lookup("R20sx2").resnet.width_factor, 2);
  EXPECT_EQ(ResNetOutputChannels(Lookup("R20sx2").resnet), 512);
}

TEST(RegistryTest, DecodesHybridOptions) {
  // Option (i): the full R50, stage 4 output at stride 32.
  ModelConfig b32 = Lookup("R50+ViT-B/32");
  EXPECT_EQ(b32.family, Family::kHybrid);
  EXPECT_EQ(b32.resnet.blocks, (std::vector<int>{3, 4, 6, 3}));
  EXPECT_EQ(ResNetStride(b32.resnet), 32);
  EXPECT_EQ(b32.transformer.patch, 1);
  EXPECT_EQ(b32.transformer.width, 768);
  // Option (ii): stage 4 dropped, its 3 blocks moved into stage 3.
  ModelConfig l16 = Lookup("R50+ViT-L/16");
  EXPECT_EQ(l16.resnet.blocks, (std::vector<int>{3, 4, 9}));
  EXPECT_EQ(ResNetStride(l16.resnet), 16);
  EXPECT_EQ(ResNetOutputChannels(l16.resnet), 1024);
  EXPECT_EQ(l16.transformer.depth, 24);
  EXPECT_EQ(SequenceLength(l16, 224), 196);
  EXPECT_EQ(SequenceLength(b32, 224), 49);

  ModelConfig small = Lookup("R11s+ViT-Mu/4");
  EXPECT_EQ(small.resnet.blocks, (std::vector<int>{1, 1, 1}));
  EXPECT_TRUE(small.resnet.small_stem);
  EXPECT_EQ(ResNetStride(small.resnet), 4);
  EXPECT_EQ(small.transformer.width, 64);
  EXPECT_EQ(SequenceLength(small, 28), 49);
  EXPECT_EQ(Lookup("R20s+ViT-Mi/4").resnet.blocks, (std::vector<int>{2, 2, 2}));
}

TEST(RegistryTest, ViTCountsMatchThePaper) {
  ModelCost b16 = Cost("ViT-B/16", 224, 1000);
  EXPECT_EQ(b16.params, 86567656);
  // 17.56 G multiply-adds, the figure quoted for B/16 at 224.
  EXPECT_NEAR(static_cast<double>(b16.forward_macs) / 1e9, 17.56, 0.005);
  EXPECT_EQ(b16.forward_macs, 17563828224);
  EXPECT_NEAR(static_cast<double>(Cost("ViT-B/16", 384, 1000).params) / 1e6, 86.86, 0.005);
  EXPECT_NEAR(static_cast<double>(Cost("ViT-L/16", 224, 1000).params) / 1e6, 304.33, 0.005);
  EXPECT_NEAR(static_cast<double>(Cost("ViT-H/14", 224, 1000).params) / 1e6, 632.05, 0.005);
  EXPECT_DOUBLE_EQ(TrainFlopsPerImage(b16.forward_macs), 6.0 * 17563828224.0);
}

TEST(RegistryTest, ViTCountIsTheSumOfItsParts) {
  // ViT-Mu/7 at 28x28 with 10 classes, counted by hand: 16 patches + [class] token.
  const int64_t d = 64, mlp = 256, p = 7, tokens = 17;
  const int64_t block =
      2 * d + 3 * (d * d + d) + (d * d + d) + 2 * d + (d * mlp + mlp) + (mlp * d + d);
  const int64_t params = (p * p * 3 * d + d) + d + tokens * d + 4 * block + 2 * d + d * 10 + 10;
  const int64_t macs = 16 * p * p * 3 * d +
                       4 * (tokens * d * 4 * d + 2 * tokens * d * mlp + 2 * tokens * tokens * d) +
                       d * 10;
  ModelCost cost = Cost("ViT-Mu/7", 28, 10);
  EXPECT_EQ(cost.params, params);
  EXPECT_EQ(cost.forward_macs, macs);

  // Global-average pooling drops the [class] token; pre_logits adds a D x R layer before the head.
  ModelConfig gap = Lookup("ViT-Mu/7");
  gap.pooling = Pooling::kGlobalAverage;
  gap.pre_logits = 32;
  ModelCost gap_cost = ComputeCost(gap, 28, 10);
  EXPECT_EQ(gap_cost.params, params - d - d + (d * 32 + 32) - (d * 10) + 32 * 10);
  EXPECT_EQ(gap_cost.forward_macs,
            macs - 4 * (d * 4 * d + 2 * d * mlp + 2 * (tokens * tokens - 16 * 16) * d) + d * 32 -
                d * 10 + 32 * 10);
}

TEST(RegistryTest, ResNetCountsMatchBiT) {
  // BiT-R50x1 has about 25.5M parameters with a 1000-class head (25,549,352 in BiT's release).
  ModelCost r50 = Cost("R50x1", 224, 1000);
  EXPECT_EQ(r50.params, 25549352);
  // The familiar ~4.1 G multiply-adds of a ResNet-50 at 224 (convolutions and head).
  EXPECT_NEAR(static_cast<double>(r50.forward_macs) / 1e9, 4.1, 0.1);
  // Width factor 2 multiplies every conv by 4, except the stem's, whose 3 input channels stay.
  ModelCost r50x2 = Cost("R50x2", 224, 1000);
  const double ratio = static_cast<double>(r50x2.forward_macs) / r50.forward_macs;
  EXPECT_GT(ratio, 3.9);
  EXPECT_LT(ratio, 4.0);
  // BiT's published sizes (1000-class heads): R101x1 44.54M, R152x2 236.34M.
  EXPECT_NEAR(static_cast<double>(Cost("R101x1", 224, 1000).params) / 1e6, 44.54, 0.01);
  EXPECT_NEAR(static_cast<double>(Cost("R152x2", 224, 1000).params) / 1e6, 236.34, 0.01);
  // The other widths BiT released (BiT-M/BiT-S files), at their published sizes.
  EXPECT_NEAR(static_cast<double>(Cost("R50x3", 224, 1000).params) / 1e6, 217.32, 0.01);
  EXPECT_NEAR(static_cast<double>(Cost("R101x3", 224, 1000).params) / 1e6, 387.93, 0.01);
  EXPECT_NEAR(static_cast<double>(Cost("R152x4", 224, 1000).params) / 1e6, 936.53, 0.01);
}

// Fig. 4's ViT-b/32: ViT-B with every hidden dimension halved (width, MLP and per-head width;
// still 12 heads and 12 layers), quoted at 224 like the paper's models.
TEST(RegistryTest, DecodesTheHalvedBase) {
  ModelConfig b = Lookup("ViT-b/32");
  ModelConfig base = Lookup("ViT-B/32");
  EXPECT_EQ(b.transformer.depth, base.transformer.depth);
  EXPECT_EQ(2 * b.transformer.width, base.transformer.width);
  EXPECT_EQ(2 * b.transformer.mlp_dim, base.transformer.mlp_dim);
  EXPECT_EQ(b.transformer.heads, base.transformer.heads);
  EXPECT_EQ(b.transformer.patch, 32);
  EXPECT_EQ(ReferenceInput(b).resolution, 224);
  EXPECT_EQ(ReferenceInput(b).num_classes, 1000);
}

TEST(RegistryTest, SmallResNetCountedByHand) {
  // R11s at 28x28, 10 classes: 3x3 stem to 16 channels, one preact bottleneck per stage.
  int64_t params = 3 * 3 * 3 * 16;
  int64_t macs = 28 * 28 * 3 * 3 * 3 * 16;
  int64_t in = 16, size = 28;
  for (int s = 0; s < 3; ++s) {
    const int64_t mid = 16 << s, out = 4 * mid;
    const int64_t out_size = s == 0 ? size : size / 2;
    params += 2 * in + in * mid + 2 * mid + 9 * mid * mid + 2 * mid + mid * out + in * out;
    macs += size * size * in * mid + out_size * out_size * (9 * mid * mid + mid * out + in * out);
    in = out;
    size = out_size;
  }
  params += 2 * in + in * 10 + 10;
  macs += in * 10;
  ModelCost cost = Cost("R11s", 28, 10);
  EXPECT_EQ(cost.params, params);
  EXPECT_EQ(cost.forward_macs, macs);
}

TEST(RegistryTest, HybridCountsBackboneEmbeddingAndTransformer) {
  // R50+ViT-B/16 at 384 with 1000 classes is 98.95M in the released conversion of the paper's
  // checkpoint (post-activation backbone, 577 tokens).
  EXPECT_NEAR(static_cast<double>(Cost("R50+ViT-B/16", 384, 1000).params) / 1e6, 98.95, 0.01);
  // The hybrid's transformer equals the plain ViT's minus its patch embedding, plus a 1x1
  // embedding from 1024 backbone channels; the sequence matches ViT-B/16's 196 patches.
  ModelCost hybrid = Cost("R50+ViT-B/16", 224, 1000);
  ModelCost vit = Cost("ViT-B/16", 224, 1000);
  const int64_t vit_embed_params = 16 * 16 * 3 * 768 + 768;
  const int64_t hybrid_embed_params = 1024 * 768 + 768;
  const int64_t backbone_params =
      hybrid.params - (vit.params - vit_embed_params) - hybrid_embed_params;
  EXPECT_GT(backbone_params, 8000000);  // R50 stages 1-3, 3+4+9 units
  EXPECT_LT(backbone_params, 16000000);
  EXPECT_GT(hybrid.forward_macs, vit.forward_macs);
  // Option (i) keeps a 4x shorter sequence than option (ii).
  EXPECT_LT(Cost("R50+ViT-B/32", 224, 1000).forward_macs, hybrid.forward_macs);
}

TEST(RegistryTest, MacsGrowWithResolutionAndShrinkWithPatch) {
  EXPECT_GT(Cost("ViT-B/16", 384, 1000).forward_macs, Cost("ViT-B/16", 224, 1000).forward_macs);
  EXPECT_LT(Cost("ViT-B/32", 224, 1000).forward_macs, Cost("ViT-B/16", 224, 1000).forward_macs);
  // The number of classes changes only the head.
  ModelCost k10 = Cost("ViT-L/32", 224, 10);
  ModelCost k1000 = Cost("ViT-L/32", 224, 1000);
  EXPECT_EQ(k1000.params - k10.params, 990 * (1024 + 1));
  EXPECT_EQ(k1000.forward_macs - k10.forward_macs, 990 * 1024);
}

TEST(RegistryTest, UnknownNameSuggestsTheNearest) {
  Expected<ModelConfig> typo = LookupModel("ViT-B/166");
  ASSERT_FALSE(typo.ok());
  EXPECT_EQ(typo.status().code(), StatusCode::kNotFound);
  EXPECT_NE(typo.status().message().find("did you mean 'ViT-B/16'"), std::string::npos)
      << typo.status().message();
  Expected<ModelConfig> hybrid = LookupModel("R50+ViT-B16");
  ASSERT_FALSE(hybrid.ok());
  EXPECT_NE(hybrid.status().message().find("'R50+ViT-B/16'"), std::string::npos);
  // Grammatical but unregistered names are refused too: sweeps must name a fixed architecture.
  EXPECT_FALSE(LookupModel("R26x1").ok());
  EXPECT_FALSE(LookupModel("").ok());
  Expected<ModelConfig> lower = LookupModel("vit-b/16");
  ASSERT_FALSE(lower.ok());  // names are exact; the suggestion shows the spelling
  EXPECT_NE(lower.status().message().find("'ViT-B/16'"), std::string::npos);
  Expected<ModelConfig> garbage = LookupModel("completely-unrelated");
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.status().message().find("did you mean"), std::string::npos);
}

TEST(RegistryTest, CheckShapeNamesTheValueToFix) {
  ModelConfig b16 = Lookup("ViT-B/16");
  Status odd = CheckShape(b16, 225, 1000);
  ASSERT_FALSE(odd.ok());
  EXPECT_EQ(odd.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(odd.message().find("225"), std::string::npos);
  EXPECT_NE(odd.message().find("patch size 16"), std::string::npos) << odd.message();
  EXPECT_NE(odd.message().find("224 or 240"), std::string::npos) << odd.message();

  Status hybrid = CheckShape(Lookup("R50+ViT-B/32"), 240, 1000);
  ASSERT_FALSE(hybrid.ok());
  EXPECT_NE(hybrid.message().find("backbone stride 32"), std::string::npos) << hybrid.message();
  EXPECT_TRUE(CheckShape(Lookup("R11s+ViT-Mu/4"), 28, 10).ok());
  EXPECT_FALSE(CheckShape(Lookup("R11s+ViT-Mu/4"), 30, 10).ok());

  for (int classes : {0, -3}) {
    Status bad = CheckShape(b16, 224, classes);
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.message().find("num_classes"), std::string::npos) << bad.message();
  }
  EXPECT_FALSE(CheckShape(b16, 0, 10).ok());
  EXPECT_FALSE(CheckShape(b16, -16, 10).ok());
  EXPECT_FALSE(CheckShape(b16, 1 << 20, 10).ok());
  // ResNets pad every convolution, so any positive size runs.
  EXPECT_TRUE(CheckShape(Lookup("R50x1"), 28, 10).ok());

  ModelConfig broken = b16;
  broken.transformer.heads = 7;
  Status heads = CheckShape(broken, 224, 10);
  ASSERT_FALSE(heads.ok());
  EXPECT_NE(heads.message().find("heads 7"), std::string::npos) << heads.message();
  ModelConfig no_blocks = Lookup("R50x1");
  no_blocks.resnet.blocks.clear();
  EXPECT_FALSE(CheckShape(no_blocks, 224, 10).ok());
}

TEST(RegistryTest, ReferenceInputs) {
  EXPECT_EQ(ReferenceInput(Lookup("ViT-H/14")).resolution, 224);
  EXPECT_EQ(ReferenceInput(Lookup("R200x3")).num_classes, 1000);
  EXPECT_EQ(ReferenceInput(Lookup("R50+ViT-L/16")).resolution, 224);
  for (const char* small : {"ViT-Mu/4", "ViT-S/7", "R29s", "R20sx2", "R20s+ViT-Mi/4"}) {
    InputShape input = ReferenceInput(Lookup(small));
    EXPECT_EQ(input.resolution, 28) << small;
    EXPECT_EQ(input.num_classes, 10) << small;
  }
}

TEST(RegistryTest, FamilyNames) {
  EXPECT_STREQ(FamilyName(Family::kViT), "ViT");
  EXPECT_STREQ(FamilyName(Family::kResNet), "ResNet");
  EXPECT_STREQ(FamilyName(Family::kHybrid), "hybrid");
}

}  // namespace
}  // namespace vitscale::models
