#include "models/npz.h"

#include <torch/types.h>

#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "models/npy.h"

namespace vitscale::models {
namespace {

// How an .npz array is laid out relative to our parameter.
enum class Layout {
  kPlain,  // same elements in the same order, maybe another shape (biases of q/k/v: (heads, dh))
  kDense,  // flax (in..., out...) kernel vs torch (out, in): flatten the first in_dims, transpose
  kConv,   // flax HWIO vs torch OIHW
};

struct Entry {
  std::string key;                 // in the .npz, without ".npy"
  std::vector<int64_t> npz_shape;  // as the released files have it
  torch::Tensor target;            // our parameter, or a view of the part this key fills
  Layout layout = Layout::kPlain;
  int in_dims = 1;  // kDense: how many leading npz dims are the input
};

std::vector<int64_t> Sizes(const torch::Tensor& t) { return t.sizes().vec(); }

Entry Plain(std::string key, torch::Tensor target, std::vector<int64_t> npz_shape = {}) {
  if (npz_shape.empty()) npz_shape = Sizes(target);
  return {std::move(key), std::move(npz_shape), std::move(target), Layout::kPlain, 1};
}

Entry Dense(std::string key, torch::Tensor target, std::vector<int64_t> npz_shape, int in_dims) {
  return {std::move(key), std::move(npz_shape), std::move(target), Layout::kDense, in_dims};
}

Entry Dense(std::string key, torch::Tensor target) {
  return Dense(std::move(key), target, {target.size(1), target.size(0)}, 1);
}

Entry Conv(std::string key, torch::Tensor target) {
  std::vector<int64_t> hwio = {target.size(2), target.size(3), target.size(1), target.size(0)};
  return {std::move(key), std::move(hwio), std::move(target), Layout::kConv, 1};
}

// "a.b.c" → {"a", "b", "c"}
std::vector<std::string> Split(const std::string& name) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    parts.push_back(name.substr(start, dot - start));
    if (dot == std::string::npos) return parts;
    start = dot + 1;
  }
}

// flax's names for the hybrid trunk's parts, per the paper's released ResNet code.
const std::map<std::string, std::string>& TrunkNames() {
  static const std::map<std::string, std::string> names = {
      {"conv1", "conv1"}, {"conv2", "conv2"}, {"conv3", "conv3"}, {"proj", "conv_proj"},
      {"norm1", "gn1"},   {"norm2", "gn2"},   {"norm3", "gn3"},   {"proj_norm", "gn_proj"}};
  return names;
}

// "weight" of a norm is flax's "scale".
std::string NormLeaf(const std::string& leaf) { return leaf == "weight" ? "scale" : "bias"; }

// Appends the entries that cover our parameter `name`; false when the name has no mapping.
bool MapParameter(const std::string& name, const torch::Tensor& param, const ModelConfig& config,
                  std::vector<Entry>* entries) {
  const std::vector<std::string> p = Split(name);
  const std::string& leaf = p.back();
  const int64_t width = config.transformer.width;
  const int64_t heads = config.transformer.heads;
  const int64_t head_dim = width / std::max<int64_t>(heads, 1);
  if (p[0] == "backbone") {
    if (p.size() == 3 && p[1] == "stem") {
      entries->push_back(Conv("conv_root/kernel", param));
      return true;
    }
    if (p.size() == 3 && p[1] == "stem_norm") {
      entries->push_back(Plain("gn_root/" + NormLeaf(leaf), param));
      return true;
    }
    if (p.size() == 6 && p[1] == "stages") {
      auto part = TrunkNames().find(p[4]);
      if (part == TrunkNames().end()) return false;
      const std::string prefix = "block" + std::to_string(std::stoi(p[2]) + 1) + "/unit" +
                                 std::to_string(std::stoi(p[3]) + 1) + "/" + part->second + "/";
      if (part->second.rfind("conv", 0) == 0) {
        entries->push_back(Conv(prefix + "kernel", param));
      } else {
        entries->push_back(Plain(prefix + NormLeaf(leaf), param));
      }
      return true;
    }
    return false;
  }
  if (name == "embedding.weight") {
    entries->push_back(Conv("embedding/kernel", param));
  } else if (name == "embedding.bias") {
    entries->push_back(Plain("embedding/bias", param));
  } else if (name == "cls") {
    entries->push_back(Plain("cls", param));
  } else if (name == "pos_embedding") {
    entries->push_back(Plain("Transformer/posembed_input/pos_embedding", param));
  } else if (p[0] == "norm" && p.size() == 2) {
    entries->push_back(Plain("Transformer/encoder_norm/" + NormLeaf(leaf), param));
  } else if ((p[0] == "pre_logits" || p[0] == "head") && p.size() == 2) {
    entries->push_back(leaf == "weight" ? Dense(p[0] + "/kernel", param)
                                        : Plain(p[0] + "/bias", param));
  } else if (p[0] == "blocks" && p.size() == 4) {
    const std::string block = "Transformer/encoderblock_" + p[1] + "/";
    const std::string attention = block + "MultiHeadDotProductAttention_1/";
    const std::string& layer = p[2];
    if (layer == "norm1" || layer == "norm2") {
      entries->push_back(Plain(
          block + (layer == "norm1" ? "LayerNorm_0/" : "LayerNorm_2/") + NormLeaf(leaf), param));
    } else if (layer == "qkv") {
      const char* parts[] = {"query", "key", "value"};
      for (int j = 0; j < 3; ++j) {
        torch::Tensor slice = param.narrow(0, j * width, width);
        const std::string key = attention + parts[j] + "/";
        entries->push_back(leaf == "weight"
                               ? Dense(key + "kernel", slice, {width, heads, head_dim}, 1)
                               : Plain(key + "bias", slice, {heads, head_dim}));
      }
    } else if (layer == "proj") {
      entries->push_back(leaf == "weight"
                             ? Dense(attention + "out/kernel", param, {heads, head_dim, width}, 2)
                             : Plain(attention + "out/bias", param));
    } else if (layer == "fc1" || layer == "fc2") {
      const std::string dense =
          block + (layer == "fc1" ? "MlpBlock_3/Dense_0/" : "MlpBlock_3/Dense_1/");
      entries->push_back(leaf == "weight" ? Dense(dense + "kernel", param)
                                          : Plain(dense + "bias", param));
    } else {
      return false;
    }
  } else {
    return false;
  }
  return true;
}

Expected<std::vector<Entry>> MapModel(ModelImpl& model) {
  if (model.config().family == Family::kResNet) {
    return InvalidArgument("'" + model.name() +
                           "' is a BiT ResNet; the .npz layout covers ViT and hybrid models only");
  }
  std::vector<Entry> entries;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    if (!MapParameter(item.key(), item.value(), model.config(), &entries)) {
      return Internal("parameter '" + item.key() + "' of '" + model.name() + "' has no .npz name");
    }
  }
  return entries;
}

torch::ScalarType TorchType(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::kFloat32:
      return torch::kFloat;
    case NpyDtype::kFloat16:
      return torch::kHalf;
    case NpyDtype::kBFloat16:
      return torch::kBFloat16;
  }
  return torch::kFloat;
}

// A float32 tensor in C order with the array's shape.
torch::Tensor ToTensor(const NpyArray& array) {
  std::vector<int64_t> shape = array.shape;
  if (array.fortran_order) std::reverse(shape.begin(), shape.end());
  // from_blob does not copy and wants a mutable pointer; the clone below owns the data.
  torch::Tensor t = torch::from_blob(const_cast<char*>(array.data.data()), shape,
                                     torch::TensorOptions().dtype(TorchType(array.dtype)))
                        .to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true);
  if (array.fortran_order && t.dim() > 1) {
    std::vector<int64_t> reversed(t.dim());
    for (int64_t i = 0; i < t.dim(); ++i) reversed[i] = t.dim() - 1 - i;
    t = t.permute(reversed).contiguous();
  }
  return t;
}

torch::Tensor ToParameterLayout(const Entry& entry, const torch::Tensor& npz) {
  switch (entry.layout) {
    case Layout::kPlain:
      return npz.reshape(entry.target.sizes());
    case Layout::kDense: {
      int64_t in = 1;
      for (int i = 0; i < entry.in_dims; ++i) in *= entry.npz_shape[i];
      return npz.reshape({in, -1}).t();
    }
    case Layout::kConv:
      return npz.permute({3, 2, 0, 1});
  }
  return npz;
}

torch::Tensor ToNpzLayout(const Entry& entry, const torch::Tensor& param) {
  switch (entry.layout) {
    case Layout::kPlain:
      return param.reshape(entry.npz_shape);
    case Layout::kDense:
      return param.t().reshape(entry.npz_shape);
    case Layout::kConv:
      return param.permute({2, 3, 1, 0});
  }
  return param;
}

// "a, b, c and 4 more"
std::string ListSome(const std::vector<std::string>& items) {
  constexpr size_t kShown = 12;
  std::string s;
  for (size_t i = 0; i < items.size() && i < kShown; ++i) s += (i ? ", " : "") + items[i];
  if (items.size() > kShown) s += " and " + std::to_string(items.size() - kShown) + " more";
  return s;
}

}  // namespace

Status ImportNpz(ModelImpl& model, const std::string& path) {
  ASSIGN_OR_RETURN(std::vector<Entry> entries, MapModel(model));
  ASSIGN_OR_RETURN(auto arrays, ReadNpz(path));
  std::vector<std::string> missing, unexpected, wrong_shape;
  std::set<std::string> used;
  for (const Entry& entry : entries) {
    auto it = arrays.find(entry.key);
    if (it == arrays.end()) {
      missing.push_back(entry.key);
      continue;
    }
    used.insert(entry.key);
    if (it->second.shape != entry.npz_shape) {
      wrong_shape.push_back(entry.key + " is " + ShapeString(it->second.shape) + " in the file, " +
                            ShapeString(entry.npz_shape) + " in the model");
    }
  }
  for (const auto& [key, array] : arrays) {
    if (!used.count(key)) unexpected.push_back(key);
  }
  if (!missing.empty() || !unexpected.empty() || !wrong_shape.empty()) {
    std::string message = path + " does not fit '" + model.name() + "' (" +
                          std::to_string(model.num_classes()) + " classes, resolution " +
                          std::to_string(model.resolution()) + ")";
    if (!missing.empty()) message += "; missing keys: " + ListSome(missing);
    if (!unexpected.empty()) message += "; unexpected keys: " + ListSome(unexpected);
    if (!wrong_shape.empty()) message += "; wrong shapes: " + ListSome(wrong_shape);
    if (!wrong_shape.empty() || !unexpected.empty()) {
      message +=
          " (build the model with the file's class count and resolution, then "
          "ReplaceHead / ResizePositionEmbedding)";
    }
    return InvalidArgument(message);
  }
  try {
    // Convert everything before touching the model, so an error leaves it as it was.
    std::vector<torch::Tensor> values;
    values.reserve(entries.size());
    for (const Entry& entry : entries) {
      values.push_back(ToParameterLayout(entry, ToTensor(arrays.at(entry.key))));
    }
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < entries.size(); ++i) entries[i].target.copy_(values[i]);
  } catch (const std::exception& e) {
    return Internal(path + ": loading into '" + model.name() + "': " + e.what());
  }
  return Status::Ok();
}

Status ExportNpz(ModelImpl& model, const std::string& path) {
  ASSIGN_OR_RETURN(std::vector<Entry> entries, MapModel(model));
  std::map<std::string, NpyArray> arrays;
  try {
    torch::NoGradGuard no_grad;
    for (const Entry& entry : entries) {
      torch::Tensor t =
          ToNpzLayout(entry, entry.target).to(torch::kCPU, torch::kFloat).contiguous();
      NpyArray array;
      array.dtype = NpyDtype::kFloat32;
      array.shape = entry.npz_shape;
      array.data.assign(static_cast<const char*>(t.data_ptr()), t.numel() * sizeof(float));
      arrays.emplace(entry.key, std::move(array));
    }
  } catch (const std::exception& e) {
    return Internal("exporting '" + model.name() + "': " + e.what());
  }
  return WriteNpz(path, arrays);
}

}  // namespace vitscale::models
