// Times CPU training steps (forward, backward, AdamW) of zoo models and prints one JSON line per
// model; bench/model_bench.py times the same architectures in Python for the comparison that
// bench/run_model_bench.sh prints.
//
//   vitscale-model-bench [--threads N] [--batch B] [--steps S] [--warmup W] NAME[@RES] ...
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/model_config_json.h"
#include "models/registry.h"
#include "models/zoo.h"

namespace {

using nlohmann::json;
using vitscale::models::Model;

int Run(int argc, char** argv) {
  int threads = 2, batch = 32, steps = 20, warmup = 3;
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> int {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return std::atoi(argv[++i]);
    };
    if (arg == "--threads") {
      threads = next();
    } else if (arg == "--batch") {
      batch = next();
    } else if (arg == "--steps") {
      steps = next();
    } else if (arg == "--warmup") {
      warmup = next();
    } else {
      names.push_back(arg);
    }
  }
  if (names.empty() || threads <= 0 || batch <= 0 || steps <= 0 || warmup < 0) {
    std::fprintf(stderr,
                 "usage: vitscale-model-bench [--threads N] [--batch B] [--steps S] "
                 "[--warmup W] NAME[@RESOLUTION] ...\n");
    return 2;
  }
  torch::set_num_threads(threads);
  for (const std::string& spec : names) {
    const size_t at = spec.find('@');
    const std::string name = spec.substr(0, at);
    auto config = vitscale::models::LookupModel(name);
    if (!config.ok()) {
      std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
      return 1;
    }
    const vitscale::models::InputShape input = vitscale::models::ReferenceInput(*config);
    const int resolution =
        at == std::string::npos ? input.resolution : std::atoi(spec.c_str() + at + 1);
    auto built = vitscale::models::BuildModel(*config, input.num_classes, resolution);
    if (!built.ok()) {
      std::fprintf(stderr, "%s\n", built.status().ToString().c_str());
      return 1;
    }
    Model model = *built;
    model->train();
    int64_t params = 0;
    for (const auto& p : model->parameters()) params += p.numel();
    torch::manual_seed(0);
    torch::Tensor images = torch::randn({batch, 3, resolution, resolution});
    torch::Tensor labels = torch::randint(input.num_classes, {batch}, torch::kLong);
    torch::optim::AdamW optimizer(model->parameters(),
                                  torch::optim::AdamWOptions(1e-3).weight_decay(0.1));
    auto step = [&] {
      optimizer.zero_grad();
      torch::Tensor loss = torch::cross_entropy_loss(model->Forward(images), labels);
      loss.backward();
      optimizer.step();
    };
    for (int i = 0; i < warmup; ++i) step();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) step();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    json line = {{"impl", "C++"},
                 {"model", name},
                 {"resolution", resolution},
                 {"num_classes", input.num_classes},
                 {"batch", batch},
                 {"threads", threads},
                 {"steps", steps},
                 {"params", params},
                 {"ms_per_step", 1000.0 * seconds / steps},
                 {"config", vitscale::bench::ModelConfigJson(*config)}};
    std::printf("%s\n", line.dump().c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitscale-model-bench: %s\n", e.what());
    return 1;
  }
}
