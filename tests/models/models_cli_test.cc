// `vitscale models import FILE --model NAME` run as a user would: files written in the released
// layouts (from the registry alone), checked against models; exit statuses, stdout and stderr.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "models/npy.h"
#include "models/npz_layout.h"
#include "models/registry.h"

namespace vitscale::models {
namespace {

namespace fs = std::filesystem;

struct Outcome {
  int status = -1;
  std::string out;
  std::string err;
};

class ModelsCliTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("vitscale-models-cli-" + std::to_string(::getpid()) + "-" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::string Slurp(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  Outcome Vitscale(const std::string& args) {
    const fs::path out = dir_ / "stdout", err = dir_ / "stderr";
    const std::string command = std::string("'") + VITSCALE_BINARY + "' " + args + " >'" +
                                out.string() + "' 2>'" + err.string() + "'";
    const int raw = std::system(command.c_str());
    return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, Slurp(out), Slurp(err)};
  }

  // Zero arrays in `model`'s released layout; `edit` may change the map before it is written.
  std::map<std::string, NpyArray> Released(const std::string& model, int classes, int resolution) {
    std::map<std::string, NpyArray> arrays;
    for (const NpzEntry& e : ReleasedLayout(*LookupModel(model), classes, resolution)) {
      NpyArray array;
      array.shape = e.shape;
      array.data.assign(array.numel() * 4, '\0');
      arrays.emplace(e.key, std::move(array));
    }
    return arrays;
  }
  std::string Write(const std::string& name, const std::map<std::string, NpyArray>& arrays) {
    const std::string path = (dir_ / name).string();
    EXPECT_TRUE(WriteNpz(path, arrays).ok());
    return path;
  }

  fs::path dir_;
};

TEST_F(ModelsCliTest, ABiTFileFitsItsResNet) {
  const std::string path = Write("bit.npz", Released("R11s", 21843, 28));
  Outcome run = Vitscale("models import '" + path + "' --model R11s");
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("fits R11s"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("21843 classes"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("padding fixed"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("sqrt(var + 1e-10)"), std::string::npos) << run.out;

  run = Vitscale("models import '" + path + "' --model R11s --json");
  ASSERT_EQ(run.status, 0) << run.err;
  const nlohmann::json reply = nlohmann::json::parse(run.out);
  EXPECT_TRUE(reply.at("fits").get<bool>());
  EXPECT_EQ(reply.at("classes"), 21843);
  EXPECT_EQ(reply.at("params"), ComputeCost(*LookupModel("R11s"), 28, 21843).params);
  EXPECT_EQ(reply.at("conventions").at("padding"), "fixed");
}

TEST_F(ModelsCliTest, AViTFileWithAnotherHeadAndGridFitsAndSaysWhatItHolds) {
  std::map<std::string, NpyArray> arrays = Released("ViT-Mu/7", 100, 56);
  NpyArray pre_logits_kernel, pre_logits_bias;
  pre_logits_kernel.shape = {64, 32};
  pre_logits_kernel.data.assign(64 * 32 * 4, '\0');
  pre_logits_bias.shape = {32};
  pre_logits_bias.data.assign(32 * 4, '\0');
  arrays["pre_logits/kernel"] = pre_logits_kernel;
  arrays["pre_logits/bias"] = pre_logits_bias;
  arrays["head/kernel"].shape = {32, 100};
  arrays["head/kernel"].data.assign(32 * 100 * 4, '\0');
  Outcome run = Vitscale("models import '" + Write("vit.npz", arrays) + "' --model ViT-Mu/7");
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("100 classes, pre_logits 32, resolution 56"), std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("GELU tanh"), std::string::npos) << run.out;
}

TEST_F(ModelsCliTest, MismatchesAreListedAndBadInput) {
  std::map<std::string, NpyArray> arrays = Released("R11s+ViT-Mu/4", 10, 28);
  arrays.erase("block2/unit1/gn_proj/scale");
  arrays["block3/unit1/conv2/kernel"].shape = {3, 3, 64, 32};
  arrays["block3/unit1/conv2/kernel"].data.assign(3 * 3 * 64 * 32 * 4, '\0');
  Outcome run =
      Vitscale("models import '" + Write("hybrid.npz", arrays) + "' --model R11s+ViT-Mu/4");
  EXPECT_EQ(run.status, 3);
  EXPECT_NE(run.err.find("missing keys: block2/unit1/gn_proj/scale"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("block3/unit1/conv2/kernel is (3, 3, 64, 32) in the file, "
                         "(3, 3, 64, 64) in the model"),
            std::string::npos)
      << run.err;

  // A ViT file is not a ResNet's, and the message says what the file looks like.
  run = Vitscale("models import '" + Write("vit.npz", Released("ViT-Mu/7", 10, 28)) +
                 "' --model R11s");
  EXPECT_EQ(run.status, 3);
  EXPECT_NE(run.err.find("looks like a ViT or hybrid file"), std::string::npos) << run.err;
}

TEST_F(ModelsCliTest, MissingFilesUnknownModelsAndBadFlags) {
  EXPECT_EQ(Vitscale("models import '" + (dir_ / "absent.npz").string() + "' --model R11s").status,
            4);
  Outcome unknown = Vitscale("models import x.npz --model R51x1");
  EXPECT_EQ(unknown.status, 4);
  EXPECT_NE(unknown.err.find("R50x1"), std::string::npos) << unknown.err;
  EXPECT_EQ(Vitscale("models import x.npz").status, 2);
  EXPECT_EQ(Vitscale("models import x.npz --model R11s --bogus").status, 2);
  std::ofstream(dir_ / "text.npz") << "not a zip\n";
  EXPECT_EQ(Vitscale("models import '" + (dir_ / "text.npz").string() + "' --model R11s").status,
            3);
}

}  // namespace
}  // namespace vitscale::models
