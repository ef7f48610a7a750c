#include "models/zoo.h"

#include <c10/util/Exception.h>

#include <memory>
#include <string>

#include "models/resnet.h"
#include "models/vit.h"

namespace vitscale::models {

void ModelImpl::SetConventions(const Conventions& conventions) {
  config_.conventions = conventions;
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* conv = module->as<StdConv2dImpl>()) {
      conv->SetConventions(conventions);
    } else if (auto* trunk = module->as<ResNetTrunkImpl>()) {
      trunk->set_padding(conventions.padding);
    } else if (auto* norm = module->as<torch::nn::GroupNormImpl>()) {
      norm->options.eps(conventions.group_norm_eps);
    } else if (auto* block = module->as<TransformerBlockImpl>()) {
      block->set_gelu(conventions.gelu);
    }
  }
}

Expected<Model> BuildModel(std::string_view name, int num_classes, int resolution) {
  ASSIGN_OR_RETURN(ModelConfig config, LookupModel(name));
  return BuildModel(config, num_classes, resolution);
}

Expected<Model> BuildModel(const ModelConfig& config, int num_classes, int resolution) {
  RETURN_IF_ERROR(CheckShape(config, resolution, num_classes));
  try {
    std::shared_ptr<ModelImpl> model;
    switch (config.family) {
      case Family::kViT:
        model = std::make_shared<ViTImpl>(config, num_classes, resolution, nullptr);
        break;
      case Family::kHybrid:
        // The paper's hybrids use a post-activation ResNet trunk (its released code): option
        // (i) or (ii) is whatever stages config.resnet lists.
        model = std::make_shared<ViTImpl>(config, num_classes, resolution,
                                          ResNetTrunk(config.resnet, /*preact=*/false));
        break;
      case Family::kResNet:
        model = std::make_shared<ResNetImpl>(config, num_classes, resolution);
        break;
    }
    if (model) {
      // The modules start with vitscale's own conventions.
      model->SetConventions(config.conventions);
      return Model(model);
    }
  } catch (const std::exception& e) {
    // Allocation failures for the largest models land here.
    return Internal("building '" + config.name + "': " + e.what());
  }
  return Internal("unknown model family for '" + config.name + "'");
}

}  // namespace vitscale::models
