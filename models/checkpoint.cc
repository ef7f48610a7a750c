#include "models/checkpoint.h"

#include <torch/serialize.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/files.h"
#include "models/zoo.h"

namespace vitscale::models {
namespace {

using nlohmann::json;

json ConfigToJson(const ModelConfig& c) {
  return json{
      {"name", c.name},
      {"family", FamilyName(c.family)},
      {"transformer",
       {{"depth", c.transformer.depth},
        {"width", c.transformer.width},
        {"mlp_dim", c.transformer.mlp_dim},
        {"heads", c.transformer.heads},
        {"patch", c.transformer.patch}}},
      {"resnet",
       {{"blocks", c.resnet.blocks},
        {"width_factor", c.resnet.width_factor},
        {"base_width", c.resnet.base_width},
        {"small_stem", c.resnet.small_stem},
        {"groupnorm_groups", c.resnet.groupnorm_groups}}},
      {"pooling", c.pooling == Pooling::kClassToken ? "token" : "gap"},
      {"pre_logits", c.pre_logits},
      {"dropout", c.dropout},
  };
}

Expected<ModelConfig> ConfigFromJson(const std::string& text, std::string_view what) {
  try {
    const json j = json::parse(text);
    ModelConfig c;
    c.name = j.at("name").get<std::string>();
    const std::string family = j.at("family").get<std::string>();
    if (family == FamilyName(Family::kViT)) {
      c.family = Family::kViT;
    } else if (family == FamilyName(Family::kResNet)) {
      c.family = Family::kResNet;
    } else if (family == FamilyName(Family::kHybrid)) {
      c.family = Family::kHybrid;
    } else {
      return Corruption(std::string(what) + ": config.family '" + family + "' is unknown");
    }
    const json& t = j.at("transformer");
    c.transformer.depth = t.at("depth").get<int>();
    c.transformer.width = t.at("width").get<int>();
    c.transformer.mlp_dim = t.at("mlp_dim").get<int>();
    c.transformer.heads = t.at("heads").get<int>();
    c.transformer.patch = t.at("patch").get<int>();
    const json& r = j.at("resnet");
    c.resnet.blocks = r.at("blocks").get<std::vector<int>>();
    c.resnet.width_factor = r.at("width_factor").get<int>();
    c.resnet.base_width = r.at("base_width").get<int>();
    c.resnet.small_stem = r.at("small_stem").get<bool>();
    c.resnet.groupnorm_groups = r.at("groupnorm_groups").get<int>();
    c.pooling = j.at("pooling").get<std::string>() == "gap" ? Pooling::kGlobalAverage
                                                            : Pooling::kClassToken;
    c.pre_logits = j.at("pre_logits").get<int>();
    c.dropout = j.at("dropout").get<double>();
    return c;
  } catch (const std::exception& e) {
    return Corruption(std::string(what) + ": bad model config: " + e.what());
  }
}

std::string SizesString(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

// Parameters and buffers under their module paths, in registration order.
std::vector<std::pair<std::string, torch::Tensor>> ModelState(ModelImpl& model) {
  std::vector<std::pair<std::string, torch::Tensor>> state;
  for (const auto& item : model.named_parameters(true))
    state.emplace_back(item.key(), item.value());
  for (const auto& item : model.named_buffers(true)) state.emplace_back(item.key(), item.value());
  return state;
}

struct Decoded {
  c10::Dict<c10::IValue, c10::IValue> dict;
};

Expected<Decoded> Decode(std::string_view bytes, std::string_view what) {
  const std::string where(what);
  try {
    c10::IValue value = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
    if (!value.isGenericDict()) return Corruption(where + ": not a vitscale model checkpoint");
    Decoded decoded{value.toGenericDict()};
    auto format = decoded.dict.find(std::string("format"));
    if (format == decoded.dict.end() || !format->value().isString()) {
      return Corruption(where + ": not a vitscale model checkpoint (no 'format')");
    }
    if (format->value().toStringRef() != kCheckpointFormat) {
      return FailedPrecondition(where + ": checkpoint format '" + format->value().toStringRef() +
                                "' is not '" + std::string(kCheckpointFormat) +
                                "'; a newer vitscale wrote it?");
    }
    return decoded;
  } catch (const std::exception& e) {
    return Corruption(where +
                      ": not a readable vitscale model checkpoint (truncated or not a "
                      "torch zip file): " +
                      std::string(e.what()).substr(0, 200));
  }
}

}  // namespace

Expected<std::string> EncodeModel(ModelImpl& model) {
  try {
    c10::Dict<std::string, torch::Tensor> state;
    for (const auto& [key, tensor] : ModelState(model)) {
      state.insert(key, tensor.detach().to(torch::kCPU).contiguous());
    }
    c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
    dict.insert(std::string("format"), std::string(kCheckpointFormat));
    dict.insert(std::string("name"), model.name());
    dict.insert(std::string("config"), ConfigToJson(model.config()).dump());
    dict.insert(std::string("num_classes"), int64_t{model.num_classes()});
    dict.insert(std::string("resolution"), int64_t{model.resolution()});
    dict.insert(std::string("state"), state);
    std::vector<char> bytes = torch::pickle_save(dict);
    return std::string(bytes.begin(), bytes.end());
  } catch (const std::exception& e) {
    return Internal("encoding '" + model.name() + "': " + e.what());
  }
}

Status SaveModel(ModelImpl& model, const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, EncodeModel(model));
  return WriteFileAtomically(path, bytes);
}

Expected<CheckpointInfo> DecodeInfo(std::string_view bytes, std::string_view what) {
  ASSIGN_OR_RETURN(Decoded decoded, Decode(bytes, what));
  try {
    CheckpointInfo info;
    ASSIGN_OR_RETURN(info.config,
                     ConfigFromJson(decoded.dict.at(std::string("config")).toStringRef(), what));
    info.num_classes = static_cast<int>(decoded.dict.at(std::string("num_classes")).toInt());
    info.resolution = static_cast<int>(decoded.dict.at(std::string("resolution")).toInt());
    return info;
  } catch (const std::exception& e) {
    return Corruption(std::string(what) +
                      ": checkpoint lacks name, config, num_classes or "
                      "resolution: " +
                      std::string(e.what()).substr(0, 200));
  }
}

Status DecodeWeights(std::string_view bytes, std::string_view what, ModelImpl& model) {
  const std::string where(what);
  ASSIGN_OR_RETURN(Decoded decoded, Decode(bytes, what));
  try {
    std::map<std::string, torch::Tensor> file;
    for (const auto& item : decoded.dict.at(std::string("state")).toGenericDict()) {
      file.emplace(item.key().toStringRef(), item.value().toTensor());
    }
    const std::string file_name = decoded.dict.at(std::string("name")).toStringRef();
    const std::string refuse =
        where + " ('" + file_name + "') does not fit model '" + model.name() + "': ";
    const auto state = ModelState(model);
    for (const auto& [key, tensor] : state) {
      auto it = file.find(key);
      if (it == file.end()) {
        return InvalidArgument(refuse + "the model's key '" + key + "' " + SizesString(tensor) +
                               " is not in the file");
      }
      if (!it->second.sizes().equals(tensor.sizes())) {
        return InvalidArgument(refuse + "key '" + key + "' is " + SizesString(it->second) +
                               " in the file, " + SizesString(tensor) + " in the model");
      }
    }
    if (file.size() != state.size()) {
      for (const auto& [key, tensor] : file) {
        bool known = false;
        for (const auto& entry : state) known = known || entry.first == key;
        if (!known) {
          return InvalidArgument(refuse + "the file's key '" + key + "' " + SizesString(tensor) +
                                 " is not in the model");
        }
      }
    }
    torch::NoGradGuard no_grad;
    for (const auto& [key, tensor] : state) {
      torch::Tensor target = tensor;
      target.copy_(file.at(key));
    }
    return Status::Ok();
  } catch (const std::exception& e) {
    return Corruption(where + ": bad checkpoint state: " + std::string(e.what()).substr(0, 200));
  }
}

Expected<CheckpointInfo> ReadCheckpointInfo(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return DecodeInfo(bytes, path);
}

Status LoadWeights(const std::string& path, ModelImpl& model) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return DecodeWeights(bytes, path, model);
}

Expected<Model> LoadModel(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  ASSIGN_OR_RETURN(CheckpointInfo info, DecodeInfo(bytes, path));
  ASSIGN_OR_RETURN(Model model, BuildModel(info.config, info.num_classes, info.resolution));
  RETURN_IF_ERROR(DecodeWeights(bytes, path, *model));
  return model;
}

}  // namespace vitscale::models
