// Weights in and out: our checkpoint format, and the paper's .npz layout checked against a
// reference forward pass written directly from the flax shapes. Tests write their own files.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "models/checkpoint.h"
#include "models/init_from.h"
#include "models/npy.h"
#include "models/npz.h"
#include "models/vit.h"
#include "models/zoo.h"

namespace vitscale::models {
namespace {

namespace fs = std::filesystem;

class WeightsTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("vitscale_weights_test_" + std::to_string(::getpid()) + "_" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    torch::manual_seed(1);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// Random weights everywhere (a fresh model's zero head would hide mapping mistakes).
Model RandomModel(const std::string& name, int classes, int resolution) {
  Model model = *BuildModel(name, classes, resolution);
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.normal_(0.0, 0.2);
  model->eval();
  return model;
}

torch::Tensor Logits(Model& model, const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  return model->Forward(images);
}

torch::Tensor ToTensor(const NpyArray& a) {
  EXPECT_EQ(a.dtype, NpyDtype::kFloat32);
  EXPECT_FALSE(a.fortran_order);
  return torch::from_blob(const_cast<char*>(a.data.data()), a.shape, torch::kFloat).clone();
}

NpyArray ToArray(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kFloat).contiguous();
  NpyArray a;
  a.shape = c.sizes().vec();
  a.data.assign(static_cast<const char*>(c.data_ptr()), c.numel() * sizeof(float));
  return a;
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_F(WeightsTest, CheckpointRoundTripGivesIdenticalLogits) {
  for (const char* name : {"ViT-Mu/4", "R11s", "R11s+ViT-Mu/4"}) {
    SCOPED_TRACE(name);
    Model model = RandomModel(name, 10, 28);
    torch::Tensor images = torch::randn({2, 3, 28, 28});
    const std::string path = Path("model.pt");
    Status saved = SaveModel(*model, path);
    ASSERT_TRUE(saved.ok()) << saved.ToString();

    Expected<CheckpointInfo> info = ReadCheckpointInfo(path);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->config.name, name);
    EXPECT_EQ(info->num_classes, 10);
    EXPECT_EQ(info->resolution, 28);

    Expected<Model> loaded = LoadModel(path);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    (*loaded)->eval();
    EXPECT_TRUE(torch::equal(Logits(*loaded, images), Logits(model, images)));
  }
}

TEST_F(WeightsTest, CheckpointAfterHeadSwapAndResizeRebuildsTheSameShape) {
  ModelConfig config = *LookupModel("ViT-Mu/4");
  config.pre_logits = 16;
  Model model = *BuildModel(config, 10, 28);
  ASSERT_TRUE(model->ReplaceHead(5).ok());
  ASSERT_TRUE(model->ResizePositionEmbedding(56).ok());
  ASSERT_TRUE(SaveModel(*model, Path("tuned.pt")).ok());
  Expected<Model> loaded = LoadModel(Path("tuned.pt"));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ((*loaded)->num_classes(), 5);
  EXPECT_EQ((*loaded)->resolution(), 56);
}

TEST_F(WeightsTest, CheckpointForAnotherArchitectureIsRefusedNamingTheKey) {
  Model small = RandomModel("ViT-Mu/4", 10, 28);
  ASSERT_TRUE(SaveModel(*small, Path("mu4.pt")).ok());
  Model other = *BuildModel("ViT-Mu/7", 10, 28);
  torch::Tensor before = other->parameters().front().clone();
  Status refused = LoadWeights(Path("mu4.pt"), *other);
  ASSERT_EQ(refused.code(), StatusCode::kInvalidArgument);
  // Own parameters come before submodules' in LibTorch's order, so the grid shows up first.
  EXPECT_NE(refused.message().find("'pos_embedding' is [1, 50, 64] in the file, "
                                   "[1, 17, 64] in the model"),
            std::string::npos)
      << refused.message();
  EXPECT_TRUE(torch::equal(other->parameters().front(), before));

  Model resnet = *BuildModel("R11s", 10, 28);
  Status wrong_family = LoadWeights(Path("mu4.pt"), *resnet);
  EXPECT_EQ(wrong_family.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_family.message().find("is not in the file"), std::string::npos)
      << wrong_family.message();

  Model more_classes = *BuildModel("ViT-Mu/4", 100, 28);
  Status head = LoadWeights(Path("mu4.pt"), *more_classes);
  EXPECT_NE(head.message().find("'head.weight' is [10, 64] in the file, [100, 64] in the model"),
            std::string::npos)
      << head.message();
}

TEST_F(WeightsTest, BrokenCheckpointsAreErrors) {
  Model model = RandomModel("ViT-Mu/7", 10, 28);
  ASSERT_TRUE(SaveModel(*model, Path("ok.pt")).ok());
  const std::string bytes = ReadBytes(Path("ok.pt"));
  WriteBytes(Path("truncated.pt"), bytes.substr(0, bytes.size() / 2));
  WriteBytes(Path("text.pt"), "this is not a checkpoint\n");
  for (const char* name : {"truncated.pt", "text.pt"}) {
    Status status = LoadWeights(Path(name), *model);
    EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.ToString();
    EXPECT_NE(status.message().find(name), std::string::npos) << status.message();
  }
  EXPECT_EQ(LoadModel(Path("missing.pt")).status().code(), StatusCode::kNotFound);
}

// ---- Released-checkpoint parity: tests/models/released_reference.py computes the released
// code's forward pass in numpy on random weights it saves in the released layout; vitscale
// imports that file and must give the same logits.

struct ParityCase {
  std::string name;
  std::string family;       // the reference's: vit, hybrid, bit
  std::string conventions;  // released | vitscale
  std::vector<std::string> args;
  ModelConfig config;
  int classes = 5;
  int resolution = 32;
};

ModelConfig TinyViT() {
  ModelConfig c;
  c.name = "parity-ViT";
  c.family = Family::kViT;
  c.transformer = {2, 32, 64, 4, 4};
  c.pre_logits = 16;
  return c;
}

// A hybrid with the released root (7x7/2 conv, 3x3/2 max-pool) and three stages: every strided
// convolution and the pool see even sizes, where SAME and symmetric padding differ.
ModelConfig TinyHybrid() {
  ModelConfig c;
  c.name = "parity-hybrid";
  c.family = Family::kHybrid;
  c.transformer = {1, 32, 64, 4, 1};
  c.resnet.blocks = {1, 1, 1};
  c.resnet.base_width = 16;
  c.resnet.groupnorm_groups = 8;
  return c;
}

ModelConfig TinyBiT() {
  ModelConfig c;
  c.name = "parity-BiT";
  c.family = Family::kResNet;
  c.pooling = Pooling::kGlobalAverage;
  c.resnet.blocks = {1, 1, 2, 1};
  c.resnet.base_width = 16;
  c.resnet.groupnorm_groups = 8;
  return c;
}

std::vector<ParityCase> ParityCases() {
  const std::vector<std::string> vit = {"--depth", "2",  "--width", "32", "--heads",      "4",
                                        "--mlp",   "64", "--patch", "4",  "--pre_logits", "16"};
  const std::vector<std::string> hybrid = {
      "--depth", "1", "--width",  "32",    "--heads",      "4",  "--mlp",    "64",
      "--patch", "1", "--blocks", "1,1,1", "--base_width", "16", "--groups", "8"};
  const std::vector<std::string> bit = {"--blocks", "1,1,2,1",  "--base_width",
                                        "16",       "--groups", "8"};
  return {
      {"ViT, released", "vit", "released", vit, TinyViT(), 5, 32},
      {"ViT, vitscale's own", "vit", "vitscale", vit, TinyViT(), 5, 32},
      {"hybrid, released (SAME padding)", "hybrid", "released", hybrid, TinyHybrid(), 5, 64},
      {"hybrid, vitscale's own (symmetric padding)", "hybrid", "vitscale", hybrid, TinyHybrid(), 5,
       64},
      {"BiT, released", "bit", "released", bit, TinyBiT(), 5, 64},
      {"BiT, vitscale's own", "bit", "vitscale", bit, TinyBiT(), 5, 64},
  };
}

torch::Tensor ReadNpyFile(const std::string& path) {
  Expected<NpyArray> array = ParseNpy(ReadBytes(path), path);
  EXPECT_TRUE(array.ok()) << array.status().ToString();
  return ToTensor(*array);
}

TEST_F(WeightsTest, ReleasedForwardPassesMatchTheReferenceWithin1e4) {
  for (const ParityCase& c : ParityCases()) {
    SCOPED_TRACE(c.name);
    std::string command = "/usr/bin/python3 " VITSCALE_RELEASED_REFERENCE " " + c.family + " " +
                          dir_.string() + " --conventions " + c.conventions + " --classes " +
                          std::to_string(c.classes) + " --resolution " +
                          std::to_string(c.resolution);
    for (const std::string& arg : c.args) command += " " + arg;
    ASSERT_EQ(std::system(command.c_str()), 0) << command;

    Expected<Model> built = BuildModel(c.config, c.classes, c.resolution);
    ASSERT_TRUE(built.ok()) << built.status().ToString();
    Model model = *built;
    model->eval();
    Status imported = ImportNpz(*model, Path("weights.npz"));
    ASSERT_TRUE(imported.ok()) << imported.ToString();
    EXPECT_EQ(model->config().conventions, ReleasedConventions(c.config.family));
    if (c.conventions == "vitscale") model->SetConventions(Conventions{});

    const torch::Tensor images = ReadNpyFile(Path("images.npy"));
    const torch::Tensor expected = ReadNpyFile(Path("logits.npy"));
    const torch::Tensor logits = Logits(model, images);
    ASSERT_EQ(logits.sizes(), expected.sizes());
    const double difference = (logits - expected).abs().max().item<double>();
    std::printf("parity %-45s max |logit difference| %.2e (logits up to %.2f)\n", c.name.c_str(),
                difference, expected.abs().max().item<double>());
    EXPECT_LT(difference, 1e-4);

    // The conventions matter: the other ones give logits far from the reference.
    model->SetConventions(c.conventions == "vitscale" ? ReleasedConventions(c.config.family)
                                                      : Conventions{});
    const double other = (Logits(model, images) - expected).abs().max().item<double>();
    std::printf("       with the other conventions:                  %.2e\n", other);
    EXPECT_GT(other, 50 * difference);
  }
}

// An .npz carries weights only: import gives the released code's conventions, and with the
// exporter's conventions the logits are identical.
TEST_F(WeightsTest, NpzExportThenImportIsExact) {
  ModelConfig with_pre_logits = *LookupModel("ViT-Mu/7");
  with_pre_logits.pre_logits = 24;
  ModelConfig same_padded = *LookupModel("R11s+ViT-Mu/4");
  same_padded.conventions = ReleasedViTConventions();
  for (const ModelConfig& config :
       {*LookupModel("ViT-Mu/4"), with_pre_logits, *LookupModel("R11s+ViT-Mu/4"), same_padded,
        TinyHybrid(), *LookupModel("R11s"), TinyBiT()}) {
    SCOPED_TRACE(config.name);
    const int resolution = config.name.rfind("parity", 0) == 0 ? 64 : 28;
    Model model = *BuildModel(config, 10, resolution);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) p.normal_(0.0, 0.2);
    }
    model->eval();
    ASSERT_TRUE(ExportNpz(*model, Path("out.npz")).ok());
    Model fresh = *BuildModel(config, 10, resolution);
    fresh->eval();
    Status imported = ImportNpz(*fresh, Path("out.npz"));
    ASSERT_TRUE(imported.ok()) << imported.ToString();
    EXPECT_EQ(fresh->config().conventions, ReleasedConventions(config.family));
    auto exported = model->named_parameters();
    for (const auto& item : fresh->named_parameters()) {
      EXPECT_TRUE(torch::equal(item.value(), *exported.find(item.key()))) << item.key();
    }
    fresh->SetConventions(config.conventions);
    torch::Tensor images = torch::randn({2, 3, resolution, resolution});
    EXPECT_TRUE(torch::equal(Logits(fresh, images), Logits(model, images)));
  }
}

TEST_F(WeightsTest, NpzHalfPrecisionAndFortranOrderImport) {
  Model model = RandomModel("ViT-Mu/7", 10, 28);
  model->SetConventions(ReleasedViTConventions());  // what an import gives
  ASSERT_TRUE(ExportNpz(*model, Path("f32.npz")).ok());
  std::map<std::string, NpyArray> arrays = *ReadNpz(Path("f32.npz"));
  torch::Tensor images = torch::randn({2, 3, 28, 28});
  torch::Tensor reference = Logits(model, images);

  // Fortran order: the same values, stored column-major.
  std::map<std::string, NpyArray> fortran = arrays;
  for (auto& [key, array] : fortran) {
    torch::Tensor t = ToTensor(array);
    std::vector<int64_t> reversed(t.dim());
    for (int64_t i = 0; i < t.dim(); ++i) reversed[i] = t.dim() - 1 - i;
    array = ToArray(t.permute(reversed));
    array.shape = t.sizes().vec();
    array.fortran_order = true;
  }
  ASSERT_TRUE(WriteNpz(Path("fortran.npz"), fortran).ok());
  Model from_fortran = *BuildModel("ViT-Mu/7", 10, 28);
  from_fortran->eval();
  ASSERT_TRUE(ImportNpz(*from_fortran, Path("fortran.npz")).ok());
  EXPECT_TRUE(torch::equal(Logits(from_fortran, images), reference));

  for (NpyDtype dtype : {NpyDtype::kFloat16, NpyDtype::kBFloat16}) {
    SCOPED_TRACE(NpyDtypeName(dtype));
    std::map<std::string, NpyArray> narrow = arrays;
    for (auto& [key, array] : narrow) {
      torch::Tensor t = ToTensor(array)
                            .to(dtype == NpyDtype::kFloat16 ? torch::kHalf : torch::kBFloat16)
                            .contiguous();
      array.dtype = dtype;
      array.data.assign(static_cast<const char*>(t.data_ptr()), t.numel() * 2);
    }
    ASSERT_TRUE(WriteNpz(Path("narrow.npz"), narrow).ok());
    Model loaded = *BuildModel("ViT-Mu/7", 10, 28);
    loaded->eval();
    Status imported = ImportNpz(*loaded, Path("narrow.npz"));
    ASSERT_TRUE(imported.ok()) << imported.ToString();
    torch::Tensor logits = Logits(loaded, images);
    EXPECT_FALSE(torch::equal(logits, reference));  // rounded weights
    EXPECT_TRUE(torch::allclose(logits, reference, 0.1, 0.1)) << (logits - reference).abs().max();
  }
}

TEST_F(WeightsTest, NpzThatDoesNotFitIsAnErrorListingKeys) {
  Model model = RandomModel("ViT-Mu/7", 10, 28);
  ASSERT_TRUE(ExportNpz(*model, Path("good.npz")).ok());
  const std::map<std::string, NpyArray> good = *ReadNpz(Path("good.npz"));
  torch::Tensor before = model->parameters().front().clone();

  std::map<std::string, NpyArray> edited = good;
  edited.erase("Transformer/encoder_norm/scale");
  edited.erase("cls");
  edited["pre_logits/kernel"] = ToArray(torch::zeros({64, 64}));
  edited["head/kernel"] = ToArray(torch::zeros({64, 1000}));
  ASSERT_TRUE(WriteNpz(Path("edited.npz"), edited).ok());
  Status status = ImportNpz(*model, Path("edited.npz"));
  ASSERT_EQ(status.code(), StatusCode::kInvalidArgument);
  for (const char* part :
       {"missing keys: cls, Transformer/encoder_norm/scale", "unexpected keys: pre_logits/kernel",
        "head/kernel is (64, 1000) in the file, (64, 10) in the model"}) {
    EXPECT_NE(status.message().find(part), std::string::npos) << status.message();
  }
  EXPECT_TRUE(torch::equal(model->parameters().front(), before));

  // float64 is not a released dtype.
  std::map<std::string, NpyArray> wrong_dtype = good;
  std::string npy = SerializeNpy(wrong_dtype.at("cls"));
  const size_t descr = npy.find("<f4");
  npy.replace(descr, 3, "<f8");
  npy += std::string(npy.size() - npy.find('\n') - 1, '\0');  // data doubled in size
  ASSERT_FALSE(ParseNpy(npy, "cls").ok());
  EXPECT_NE(ParseNpy(npy, "cls").status().message().find("'<f8'"), std::string::npos);

  // A ViT file is not a BiT file.
  Model resnet = *BuildModel("R11s", 10, 28);
  Status refused = ImportNpz(*resnet, Path("good.npz"));
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("missing keys: resnet/root_block/standardized_conv2d/kernel"),
            std::string::npos)
      << refused.message();
}

TEST_F(WeightsTest, BrokenNpzFilesAreErrors) {
  Model model = RandomModel("ViT-Mu/7", 10, 28);
  ASSERT_TRUE(ExportNpz(*model, Path("good.npz")).ok());
  const std::string bytes = ReadBytes(Path("good.npz"));
  WriteBytes(Path("truncated.npz"), bytes.substr(0, bytes.size() * 2 / 3));
  WriteBytes(Path("text.npz"), "just some text, not a zip archive\n");
  for (const char* name : {"truncated.npz", "text.npz"}) {
    Status status = ImportNpz(*model, Path(name));
    EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.ToString();
    EXPECT_NE(status.message().find(name), std::string::npos) << status.message();
  }
  EXPECT_EQ(ImportNpz(*model, Path("absent.npz")).code(), StatusCode::kNotFound);
}

// A job starting from weights pretrained with another head and resolution: every trunk weight
// arrives, the head is a fresh zero one, and the position embeddings are the source's resized.
TEST_F(WeightsTest, InitializeFromAnotherHeadAndResolution) {
  Model source = RandomModel("ViT-Mu/7", 10, 28);
  ASSERT_TRUE(ExportNpz(*source, Path("source.npz")).ok());
  ASSERT_TRUE(SaveModel(*source, Path("source.pt")).ok());
  Model expected = RandomModel("ViT-Mu/7", 10, 28);
  ASSERT_TRUE(LoadWeights(Path("source.pt"), *expected).ok());
  ASSERT_TRUE(expected->ReplaceHead(5).ok());
  ASSERT_TRUE(expected->ResizePositionEmbedding(56).ok());

  for (const std::string file : {"source.npz", "source.pt"}) {
    SCOPED_TRACE(file);
    Model target = *BuildModel("ViT-Mu/7", 5, 56);
    Status status = InitializeFrom(Path(file), *target);
    ASSERT_TRUE(status.ok()) << status.ToString();
    auto want = expected->named_parameters();
    for (const auto& item : target->named_parameters()) {
      EXPECT_TRUE(torch::allclose(item.value(), *want.find(item.key()), 1e-6, 1e-6)) << item.key();
    }
    target->eval();
    torch::Tensor logits = target->Forward(torch::randn({2, 3, 56, 56}));
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 5}));
    EXPECT_EQ(logits.abs().max().item<float>(), 0.0f);  // the new head starts at zero
  }
}

TEST_F(WeightsTest, InitializeFromAnotherArchitectureIsRefused) {
  Model source = RandomModel("ViT-Mu/7", 10, 28);
  ASSERT_TRUE(SaveModel(*source, Path("mu.pt")).ok());
  Model target = *BuildModel("ViT-Mi/7", 10, 28);
  Status status = InitializeFrom(Path("mu.pt"), *target);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("ViT-Mu/7"), std::string::npos) << status.message();
}

// A released BiT file (another head) and a released hybrid file start jobs: the trunk arrives,
// the head is new, and the job's model computes with the released code's conventions, which
// its own checkpoint then carries.
TEST_F(WeightsTest, InitializeFromReleasedFilesTakesTheirConventions) {
  for (const ModelConfig& config : {TinyBiT(), TinyHybrid()}) {
    SCOPED_TRACE(config.name);
    Model released = *BuildModel(config, 21, 64);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : released->parameters()) p.normal_(0.0, 0.2);
    }
    ASSERT_TRUE(ExportNpz(*released, Path("released.npz")).ok());
    Model job = *BuildModel(config, 5, 64);
    Status status = InitializeFrom(Path("released.npz"), *job);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(job->config().conventions, ReleasedConventions(config.family));
    auto want = released->named_parameters();
    for (const auto& item : job->named_parameters()) {
      if (item.key().rfind("head.", 0) == 0) {
        EXPECT_EQ(item.value().abs().max().item<float>(), 0.0f) << item.key();
      } else {
        EXPECT_TRUE(torch::equal(item.value(), *want.find(item.key()))) << item.key();
      }
    }
    ASSERT_TRUE(SaveModel(*job, Path("job.pt")).ok());
    Expected<CheckpointInfo> info = ReadCheckpointInfo(Path("job.pt"));
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->config.conventions, ReleasedConventions(config.family));
    Model next = *BuildModel(config, 5, 64);
    ASSERT_TRUE(InitializeFrom(Path("job.pt"), *next).ok());
    EXPECT_EQ(next->config().conventions, ReleasedConventions(config.family));
  }
}

// The released code's initialisation: q, k and v each get Xavier's bound of a D x D matrix (a
// fused 3D x D one would get a smaller bound), and the hybrid's units start at their shortcut
// (the last GroupNorm's scale zero).
TEST_F(WeightsTest, InitialisationFollowsTheReleasedCode) {
  Model vit = *BuildModel("ViT-Mi/7", 10, 28);
  const int64_t d = 128;
  const double bound = std::sqrt(6.0 / (d + d));
  const double fused_bound = std::sqrt(6.0 / (d + 3 * d));
  for (const auto& item : vit->named_parameters()) {
    if (item.key().find(".qkv.weight") == std::string::npos) continue;
    for (int part = 0; part < 3; ++part) {
      const double max = item.value().narrow(0, part * d, d).abs().max().item<double>();
      EXPECT_LE(max, bound) << item.key();
      EXPECT_GT(max, fused_bound) << item.key() << " part " << part;
    }
  }
  Model hybrid = *BuildModel("R11s+ViT-Mu/4", 10, 28);
  int zeroed = 0;
  for (const auto& item : hybrid->named_parameters()) {
    if (item.key().find("backbone.stages.") != 0) continue;
    const bool last_norm_scale = item.key().find(".norm3.weight") != std::string::npos;
    if (last_norm_scale) {
      EXPECT_EQ(item.value().abs().max().item<float>(), 0.0f) << item.key();
      ++zeroed;
    } else if (item.key().find("norm") != std::string::npos &&
               item.key().find(".weight") != std::string::npos) {
      EXPECT_EQ(item.value().min().item<float>(), 1.0f) << item.key();
    }
  }
  EXPECT_EQ(zeroed, 3);  // one unit per stage
  // BiT's own units keep unit scales.
  Model resnet = *BuildModel("R11s", 10, 28);
  for (const auto& item : resnet->named_parameters()) {
    if (item.key().find("norm3.weight") != std::string::npos) {
      EXPECT_EQ(item.value().min().item<float>(), 1.0f) << item.key();
    }
  }
}

}  // namespace
}  // namespace vitscale::models
