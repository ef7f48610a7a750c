#include "sweep/recipes.h"

#include <utility>

#include "common/names.h"

namespace vitscale::sweep {
namespace {

std::vector<Recipe> BuildRecipes() {
  std::vector<Recipe> recipes;

  // Table 3 / App. B.1: Adam (0.9, 0.999), batch 4096, 10k warmup steps, resolution 224.
  TrainConfig paper;
  paper.optimizer = "adam";
  paper.batch_size = 4096;
  paper.beta1 = 0.9;
  paper.beta2 = 0.999;
  paper.warmup_steps = 10000;
  paper.resolution = 224;

  Recipe jft;
  jft.name = "jft-300m";
  jft.description = "JFT-300M pretraining: wd 0.1, linear decay, no dropout, 7 epochs";
  jft.dataset = "jft-300m";
  jft.train = paper;
  jft.train.epochs = 7;
  jft.train.lr = 0;  // per model, Table 3
  jft.train.weight_decay = 0.1;
  jft.train.lr_decay = "linear";
  jft.train.dropout = 0.0;
  recipes.push_back(jft);

  Recipe in21k;
  in21k.name = "imagenet21k";
  in21k.description = "ImageNet-21k pretraining: lr 1e-3, wd 0.03, dropout 0.1, 90 epochs";
  in21k.dataset = "imagenet21k";
  in21k.train = paper;
  in21k.train.epochs = 90;
  in21k.train.lr = 1e-3;
  in21k.train.weight_decay = 0.03;
  in21k.train.lr_decay = "linear";
  in21k.train.dropout = 0.1;
  recipes.push_back(in21k);

  Recipe in1k;
  in1k.name = "imagenet";
  in1k.description =
      "ImageNet pretraining: lr 3e-3, wd 0.3, dropout 0.1, cosine decay, clip 1, 300 epochs";
  in1k.dataset = "imagenet";
  in1k.train = paper;
  in1k.train.epochs = 300;
  in1k.train.lr = 3e-3;
  in1k.train.weight_decay = 0.3;
  in1k.train.lr_decay = "cosine";
  in1k.train.grad_clip_norm = 1.0;
  in1k.train.dropout = 0.1;
  recipes.push_back(in1k);

  // Scaled down for 28x28 images on CPU cores: the paper's Adam recipe with a batch and warmup
  // that suit tens of thousands of images, and transfer at the pretraining resolution.
  Recipe small;
  small.name = "small-images";
  small.description = "28x28 CPU studies: batch 128, lr 1e-3, wd 0.01, cosine, 5 epochs";
  small.dataset = "fashion-mnist";
  small.train = paper;
  small.train.batch_size = 128;
  small.train.epochs = 5;
  small.train.lr = 1e-3;
  small.train.weight_decay = 0.01;
  small.train.warmup_steps = 100;
  small.train.lr_decay = "cosine";
  small.train.grad_clip_norm = 1.0;
  small.train.dropout = 0.0;
  small.train.resolution = 28;
  small.fine_tune_resolution = 28;
  small.fine_tune_batch_size = 128;
  recipes.push_back(small);
  return recipes;
}

// Table 3 base learning rates for JFT-300M pretraining.
const std::pair<const char*, double> kJftLearningRates[] = {
    {"ViT-B/32", 8e-4},     {"ViT-B/16", 8e-4},     {"ViT-L/32", 6e-4},     {"ViT-L/16", 4e-4},
    {"ViT-H/14", 3e-4},     {"R50x1", 1e-3},        {"R50x2", 1e-3},        {"R101x1", 8e-4},
    {"R152x1", 6e-4},       {"R152x2", 6e-4},       {"R200x3", 6e-4},       {"R50+ViT-B/32", 8e-4},
    {"R50+ViT-B/16", 8e-4}, {"R50+ViT-L/32", 2e-4}, {"R50+ViT-L/16", 4e-4},
};

}  // namespace

const std::vector<Recipe>& Recipes() {
  static const std::vector<Recipe> recipes = BuildRecipes();
  return recipes;
}

std::vector<std::string> RecipeNames() {
  std::vector<std::string> names;
  for (const Recipe& r : Recipes()) names.push_back(r.name);
  return names;
}

Expected<Recipe> LookupRecipe(std::string_view name) {
  for (const Recipe& r : Recipes()) {
    if (r.name == name) return r;
  }
  std::string known;
  for (const std::string& n : RecipeNames()) known += (known.empty() ? "" : ", ") + n;
  return NotFound("unknown recipe '" + std::string(name) + "'" + DidYouMean(name, RecipeNames()) +
                  " (known: " + known + ")");
}

FineTuneProtocol PaperFineTuneProtocol(std::string_view dataset) {
  const std::vector<double> small_grid = {0.001, 0.003, 0.01, 0.03};
  if (dataset == "imagenet") return {{0.003, 0.01, 0.03, 0.06}, 0.01};
  if (dataset == "cifar10" || dataset == "cifar100") return {small_grid, 0.02};
  if (dataset == "pets" || dataset == "flowers") return {small_grid, 0.10};
  return {{0.01}, std::nullopt};
}

std::optional<double> BaseLearningRate(const Recipe& recipe, std::string_view model) {
  if (recipe.train.lr > 0) return recipe.train.lr;
  for (const auto& [name, lr] : kJftLearningRates) {
    if (model == name) return lr;
  }
  return std::nullopt;
}

}  // namespace vitscale::sweep
