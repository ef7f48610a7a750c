#include "trainer/train_state.h"

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
    // GPU tensors are stored as host tensors, so that any host can resume or read them.
    auto host = [](const torch::Tensor& t) {
      return t.is_cuda() ? t.detach().to(torch::kCPU).set_requires_grad(t.requires_grad()) : t;
    };
    for (const auto& item : module.named_parameters()) {
      archive.write(item.key(), host(item.value()));
    }
    for (const auto& item : module.named_buffers()) {
      archive.write(item.key(), host(item.value()), /*is_buffer=*/true);
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
    // The moments go where the parameters are (a GPU run's, too).
    c10::optional<torch::Device> device;
    for (auto& group : optimizer.param_groups()) {
      if (!group.params().empty()) device = group.params().front().device();
    }
    archive.load_from(in, device);
    optimizer.load(archive);
    return Status::Ok();
  });
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
