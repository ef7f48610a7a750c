// TrainProgress as state.json, and the three blobs of a checkpoint (train_state.h). Apart from
// train_state.cc so that the tensor half builds without a JSON library (bench/gpu).
#include <nlohmann/json.hpp>

#include "models/config_json.h"
#include "trainer/train_state.h"

namespace vitscale::trainer {

std::string SerializeProgress(const TrainProgress& p) {
  nlohmann::json j = {
      {"step", p.step},
      {"images_seen", p.images_seen},
      {"seed", p.seed},
      {"model", p.model},
      {"schedule",
       {{"base_lr", p.schedule.base_lr},
        {"warmup_steps", p.schedule.warmup_steps},
        {"total_steps", p.schedule.total_steps},
        {"decay", DecayName(p.schedule.decay)},
        {"end_lr", p.schedule.end_lr}}},
      {"conventions", models::ConventionsToJson(p.conventions)},
      {"best_validation", p.best_validation},
      {"best_step", p.best_step},
  };
  return j.dump(2);
}

Expected<TrainProgress> ParseProgress(const std::string& text) {
  TrainProgress p;
  try {
    nlohmann::json j = nlohmann::json::parse(text);
    p.step = j.at("step").get<int64_t>();
    p.images_seen = j.at("images_seen").get<int64_t>();
    p.seed = j.at("seed").get<uint64_t>();
    p.model = j.at("model").get<std::string>();
    const nlohmann::json& s = j.at("schedule");
    p.schedule.base_lr = s.at("base_lr").get<double>();
    p.schedule.warmup_steps = s.at("warmup_steps").get<int64_t>();
    p.schedule.total_steps = s.at("total_steps").get<int64_t>();
    ASSIGN_OR_RETURN(p.schedule.decay, ParseDecay(s.at("decay").get<std::string>()));
    p.schedule.end_lr = s.at("end_lr").get<double>();
    // Checkpoints written before these fields existed have vitscale's own conventions and no
    // early stopping.
    if (j.contains("conventions")) {
      ASSIGN_OR_RETURN(p.conventions, models::ConventionsFromJson(j.at("conventions"), kStateBlob));
    }
    p.best_validation = j.value("best_validation", -1.0);
    p.best_step = j.value("best_step", int64_t{-1});
  } catch (const nlohmann::json::exception& e) {
    return Corruption(std::string("bad ") + kStateBlob + ": " + e.what());
  }
  return p;
}

Expected<std::map<std::string, std::string>> SnapshotTraining(const torch::nn::Module& module,
                                                              torch::optim::Optimizer& optimizer,
                                                              const TrainProgress& progress) {
  std::map<std::string, std::string> blobs;
  ASSIGN_OR_RETURN(blobs[kModelBlob], SerializeModule(module));
  ASSIGN_OR_RETURN(blobs[kOptimizerBlob], SerializeOptimizer(optimizer));
  blobs[kStateBlob] = SerializeProgress(progress);
  return blobs;
}

}  // namespace vitscale::trainer
