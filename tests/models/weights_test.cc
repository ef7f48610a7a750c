// Weights in and out: our checkpoint format, and the paper's .npz layout checked against a
// reference forward pass written directly from the flax shapes. Tests write their own files.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
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

// The flax model of the paper's code, written from the .npz shapes alone: tokens are
// (batch, N, D) rows, kernels multiply from the right, attention is per head via einsum.
torch::Tensor ReferenceViT(const std::map<std::string, NpyArray>& npz, const torch::Tensor& images,
                           int depth) {
  auto w = [&](const std::string& key) { return ToTensor(npz.at(key)); };
  auto layer_norm = [&](const torch::Tensor& x, const std::string& prefix) {
    return torch::layer_norm(x, {x.size(-1)}, w(prefix + "/scale"), w(prefix + "/bias"), 1e-6);
  };
  torch::Tensor kernel = w("embedding/kernel");  // (P, P, C, D)
  const int64_t p = kernel.size(0), d = kernel.size(3), batch = images.size(0);
  const int64_t grid = images.size(2) / p;
  torch::Tensor x = images
                        .permute({0, 2, 3, 1})  // NHWC
                        .reshape({batch, grid, p, grid, p, 3})
                        .permute({0, 1, 3, 2, 4, 5})
                        .reshape({batch, grid * grid, p * p * 3});
  x = torch::matmul(x, kernel.reshape({p * p * 3, d})) + w("embedding/bias");
  x = torch::cat({w("cls").expand({batch, 1, d}), x}, 1) +
      w("Transformer/posembed_input/pos_embedding");
  for (int i = 0; i < depth; ++i) {
    const std::string block = "Transformer/encoderblock_" + std::to_string(i) + "/";
    const std::string attention = block + "MultiHeadDotProductAttention_1/";
    torch::Tensor y = layer_norm(x, block + "LayerNorm_0");
    auto project = [&](const std::string& name) {
      return torch::einsum("btd,dhk->bthk", {y, w(attention + name + "/kernel")}) +
             w(attention + name + "/bias");
    };
    torch::Tensor q = project("query"), k = project("key"), v = project("value");
    torch::Tensor scores =
        torch::einsum("bqhk,bshk->bhqs", {q, k}) / std::sqrt(static_cast<double>(q.size(3)));
    torch::Tensor o = torch::einsum("bhqs,bshk->bqhk", {scores.softmax(-1), v});
    x = x + torch::einsum("bqhk,hkd->bqd", {o, w(attention + "out/kernel")}) +
        w(attention + "out/bias");
    y = layer_norm(x, block + "LayerNorm_2");
    const std::string mlp = block + "MlpBlock_3/";
    y = torch::gelu(torch::matmul(y, w(mlp + "Dense_0/kernel")) + w(mlp + "Dense_0/bias"));
    x = x + torch::matmul(y, w(mlp + "Dense_1/kernel")) + w(mlp + "Dense_1/bias");
  }
  x = layer_norm(x, "Transformer/encoder_norm").select(1, 0);
  return torch::matmul(x, w("head/kernel")) + w("head/bias");
}

TEST_F(WeightsTest, NpzImportMatchesTheFlaxLayout) {
  // Export only to learn the key set; every array is then replaced by fresh random values of
  // the released shapes, so the check does not depend on our export.
  Model model = *BuildModel("ViT-Mu/4", 10, 28);
  ASSERT_TRUE(ExportNpz(*model, Path("layout.npz")).ok());
  Expected<std::map<std::string, NpyArray>> arrays = ReadNpz(Path("layout.npz"));
  ASSERT_TRUE(arrays.ok()) << arrays.status().ToString();
  const ModelConfig& c = model->config();
  const int64_t d = c.transformer.width, h = c.transformer.heads, mlp = c.transformer.mlp_dim;
  const std::string a = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/";
  const std::map<std::string, std::vector<int64_t>> expected_shapes = {
      {"embedding/kernel", {4, 4, 3, d}},
      {"cls", {1, 1, d}},
      {"Transformer/posembed_input/pos_embedding", {1, 50, d}},
      {a + "query/kernel", {d, h, d / h}},
      {a + "value/bias", {h, d / h}},
      {a + "out/kernel", {h, d / h, d}},
      {"Transformer/encoderblock_3/MlpBlock_3/Dense_0/kernel", {d, mlp}},
      {"Transformer/encoderblock_3/LayerNorm_2/scale", {d}},
      {"Transformer/encoder_norm/bias", {d}},
      {"head/kernel", {d, 10}}};
  for (const auto& [key, shape] : expected_shapes) {
    ASSERT_TRUE(arrays->count(key)) << key;
    EXPECT_EQ(arrays->at(key).shape, shape) << key;
  }
  EXPECT_EQ(arrays->size(), 4u + 16u * 4u + 2u + 2u);

  for (auto& [key, array] : *arrays) {
    array = ToArray(torch::randn(array.shape) * 0.3 + (key.find("scale") != std::string::npos));
  }
  ASSERT_TRUE(WriteNpz(Path("random.npz"), *arrays).ok());
  Status imported = ImportNpz(*model, Path("random.npz"));
  ASSERT_TRUE(imported.ok()) << imported.ToString();
  model->eval();
  torch::Tensor images = torch::randn({2, 3, 28, 28});
  torch::Tensor expected = ReferenceViT(*arrays, images, c.transformer.depth);
  EXPECT_TRUE(torch::allclose(Logits(model, images), expected, 1e-4, 1e-4))
      << (Logits(model, images) - expected).abs().max();
}

TEST_F(WeightsTest, NpzExportThenImportGivesIdenticalLogits) {
  ModelConfig with_pre_logits = *LookupModel("ViT-Mu/7");
  with_pre_logits.pre_logits = 24;
  for (const ModelConfig& config :
       {*LookupModel("ViT-Mu/4"), with_pre_logits, *LookupModel("R11s+ViT-Mu/4")}) {
    SCOPED_TRACE(config.name);
    Model model = *BuildModel(config, 10, 28);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) p.normal_(0.0, 0.2);
    }
    model->eval();
    ASSERT_TRUE(ExportNpz(*model, Path("out.npz")).ok());
    Model fresh = *BuildModel(config, 10, 28);
    fresh->eval();
    Status imported = ImportNpz(*fresh, Path("out.npz"));
    ASSERT_TRUE(imported.ok()) << imported.ToString();
    torch::Tensor images = torch::randn({2, 3, 28, 28});
    EXPECT_TRUE(torch::equal(Logits(fresh, images), Logits(model, images)));
  }
}

TEST_F(WeightsTest, NpzHalfPrecisionAndFortranOrderImport) {
  Model model = RandomModel("ViT-Mu/7", 10, 28);
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

  Model resnet = *BuildModel("R11s", 10, 28);
  Status refused = ExportNpz(*resnet, Path("resnet.npz"));
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("R11s"), std::string::npos);
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

}  // namespace
}  // namespace vitscale::models
