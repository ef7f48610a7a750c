// Named training recipes: the paper's pretraining setups (Sec. 4.1, Table 3, App. B.1) and one
// for 28x28 CPU studies. A sweep names one recipe and overrides any field; every field a recipe
// leaves to the model (the base learning rate on JFT-300M) is filled from the paper's table.
// Immutable static data: safe to call from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "sweep/job_config.h"

namespace vitscale::sweep {

struct Recipe {
  std::string name;
  std::string description;
  std::string dataset;  // the pretraining dataset when a sweep names none
  TrainConfig train;    // train.lr == 0: per-model base learning rate, see BaseLearningRate
  // Transfer defaults. Few-shot: Sec. 4.1 and big_vision's practice. Fine-tuning: Table 4,
  // except that `small-images` fine-tunes at its own resolution and batch; the learning rates
  // and held-out fractions are per dataset (PaperFineTuneProtocol).
  std::vector<int64_t> few_shot_shots = {1, 5, 10, 25};
  int64_t few_shot_seeds = 3;
  double few_shot_l2 = 1024;
  int64_t fine_tune_resolution = 384;
  int64_t fine_tune_batch_size = 512;
};

// How the paper fine-tunes on `dataset` (Table 4, App. B.1.1): the learning-rate grid and the
// fraction of the training split held out to choose from it (ImageNet {0.003, 0.01, 0.03, 0.06}
// on 1%; CIFAR-10/100 {0.001, 0.003, 0.01, 0.03} on 2%; Pets and Flowers the same grid on 10%).
// Other datasets follow its VTAB protocol: 0.01 alone, nothing held out. The reported run then
// trains on the whole training split at the chosen rate.
struct FineTuneProtocol {
  std::vector<double> lrs;
  std::optional<double> holdout;  // unset when there is nothing to choose
};
FineTuneProtocol PaperFineTuneProtocol(std::string_view dataset);

// Every recipe, in a stable order.
const std::vector<Recipe>& Recipes();
std::vector<std::string> RecipeNames();
// Unknown names get an error naming the nearest recipe.
Expected<Recipe> LookupRecipe(std::string_view name);

// The learning rate `recipe` trains `model` with when a sweep sets none: the recipe's own
// train.lr, or for jft-300m the paper's per-model value (R200x3 is not in the paper's table and
// takes R152's, the deepest ResNet there). nullopt when the paper gives none for this model.
std::optional<double> BaseLearningRate(const Recipe& recipe, std::string_view model);

}  // namespace vitscale::sweep
