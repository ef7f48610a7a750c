#include "models/checkpoint.h"

#include <torch/serialize.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/files.h"
#include "models/config_json.h"
#include "models/zoo.h"

namespace vitscale::models {
namespace {

using nlohmann::json;

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
    dict.insert(std::string("config"), ModelConfigToJson(model.config()).dump());
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
    const json config = json::parse(decoded.dict.at(std::string("config")).toStringRef());
    ASSIGN_OR_RETURN(info.config, ModelConfigFromJson(config, what));
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
