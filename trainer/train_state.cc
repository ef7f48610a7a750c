#include "trainer/train_state.h"

#include <nlohmann/json.hpp>
#include <sstream>

#include "models/config_json.h"

namespace vitscale::trainer {
namespace {

// LibTorch reports bad archives by throwing c10::Error; convert at this edge.
template <typename Fn>
Status CatchTorch(const char* what, Fn&& fn) {
  try {
    return fn();
  } catch (const c10::Error& e) {
    return Corruption(std::string(what) + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return Corruption(std::string(what) + ": " + e.what());
  }
}

}  // namespace

Expected<std::string> SerializeModule(const torch::nn::Module& module) {
  std::ostringstream out;
  Status status = CatchTorch("cannot serialise model", [&] {
    torch::serialize::OutputArchive archive;
    for (const auto& item : module.named_parameters()) archive.write(item.key(), item.value());
    for (const auto& item : module.named_buffers()) {
      archive.write(item.key(), item.value(), /*is_buffer=*/true);
    }
    archive.save_to(out);
    return Status::Ok();
  });
  if (!status.ok()) return status;
  return out.str();
}

Status LoadModule(const std::string& bytes, torch::nn::Module& module) {
  return CatchTorch("cannot read model checkpoint", [&]() -> Status {
    std::istringstream in(bytes);
    torch::serialize::InputArchive archive;
    archive.load_from(in);
    torch::NoGradGuard no_grad;
    auto copy_into = [&](const std::string& name, torch::Tensor& target,
                         bool is_buffer) -> Status {
      torch::Tensor stored;
      if (!archive.try_read(name, stored, is_buffer)) {
        return InvalidArgument("checkpoint has no tensor '" + name +
                               "': it belongs to another model");
      }
      if (!stored.sizes().equals(target.sizes())) {
        std::ostringstream message;
        message << "checkpoint tensor '" << name << "' has shape " << stored.sizes()
                << ", the model's has " << target.sizes() << ": it belongs to another model";
        return InvalidArgument(message.str());
      }
      target.copy_(stored);
      return Status::Ok();
    };
    for (auto& item : module.named_parameters()) {
      RETURN_IF_ERROR(copy_into(item.key(), item.value(), false));
    }
    for (auto& item : module.named_buffers()) {
      RETURN_IF_ERROR(copy_into(item.key(), item.value(), true));
    }
    return Status::Ok();
  });
}

Expected<std::string> SerializeOptimizer(torch::optim::Optimizer& optimizer) {
  std::ostringstream out;
  Status status = CatchTorch("cannot serialise optimizer", [&] {
    torch::serialize::OutputArchive archive;
    optimizer.save(archive);
    archive.save_to(out);
    return Status::Ok();
  });
  if (!status.ok()) return status;
  return out.str();
}

Status LoadOptimizer(const std::string& bytes, torch::optim::Optimizer& optimizer) {
  return CatchTorch("cannot read optimizer checkpoint", [&] {
    std::istringstream in(bytes);
    torch::serialize::InputArchive archive;
    archive.load_from(in);
    optimizer.load(archive);
    return Status::Ok();
  });
}

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

uint64_t StepSeed(uint64_t seed, int64_t step, int rank) {
  // SplitMix64 over the three inputs: nearby (seed, step, rank) give unrelated streams.
  auto mix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  return mix(mix(mix(seed) ^ static_cast<uint64_t>(step)) ^ static_cast<uint64_t>(rank));
}

}  // namespace vitscale::trainer
