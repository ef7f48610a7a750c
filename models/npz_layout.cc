#include "models/npz_layout.h"

#include <fmt/format.h>

#include <cmath>
#include <set>
#include <utility>

#include "models/npy.h"

namespace vitscale::models {
namespace {

using Shape = std::vector<int64_t>;

class LayoutBuilder {
 public:
  // A 1-D or plain array: norms, biases, embeddings.
  void Plain(std::string key, Shape shape, std::string parameter) {
    entries_.push_back({std::move(key), std::move(shape), std::move(parameter), NpzLayout::kPlain});
  }
  // A linear layer's kernel, (in, out) as released, or (in..., out...) with in_dims inputs.
  void Dense(std::string key, Shape shape, std::string parameter, int in_dims = 1) {
    entries_.push_back(
        {std::move(key), std::move(shape), std::move(parameter), NpzLayout::kDense, in_dims});
  }
  // A convolution kernel, k x k x in x out as released.
  void Conv(std::string key, int64_t kernel, int64_t in, int64_t out, std::string parameter) {
    entries_.push_back(
        {std::move(key), {kernel, kernel, in, out}, std::move(parameter), NpzLayout::kConv});
  }
  // A row block of a fused parameter.
  void Rows(int64_t first, int64_t rows) {
    entries_.back().first_row = first;
    entries_.back().rows = rows;
  }
  std::vector<NpzEntry> Take() { return std::move(entries_); }

 private:
  std::vector<NpzEntry> entries_;
};

// Calls unit(stage, block, in, mid, out, projected) for each bottleneck of the trunk, in order.
template <typename Fn>
void ForEachUnit(const ResNetConfig& resnet, Fn&& unit) {
  const int64_t stem_width = int64_t{resnet.base_width} * resnet.width_factor;
  int64_t in = stem_width;
  for (size_t s = 0; s < resnet.blocks.size(); ++s) {
    const int64_t mid = stem_width << s;
    const int64_t out = 4 * mid;
    for (int b = 0; b < resnet.blocks[s]; ++b) {
      const bool strided = b == 0 && s > 0;
      unit(static_cast<int>(s), b, in, mid, out, strided || in != out);
      in = out;
    }
  }
}

// A norm's scale and bias: flax's "scale" and "bias", or BiT's "gamma" and "beta".
void AddNorm(LayoutBuilder* layout, const std::string& prefix, bool bit_names, int64_t channels,
             const std::string& parameter) {
  layout->Plain(prefix + (bit_names ? "gamma" : "scale"), {channels}, parameter + ".weight");
  layout->Plain(prefix + (bit_names ? "beta" : "bias"), {channels}, parameter + ".bias");
}

// BiT's release: pre-activation units under resnet/, and the head as a 1x1 convolution.
void AddBiT(const ModelConfig& config, int num_classes, LayoutBuilder* layout) {
  const ResNetConfig& r = config.resnet;
  const int64_t stem_width = int64_t{r.base_width} * r.width_factor;
  layout->Conv("resnet/root_block/standardized_conv2d/kernel", r.small_stem ? 3 : 7, 3, stem_width,
               "trunk.stem.weight");
  ForEachUnit(r, [&](int s, int b, int64_t in, int64_t mid, int64_t out, bool projected) {
    const std::string unit = fmt::format("resnet/block{}/unit{:02d}/", s + 1, b + 1);
    const std::string ours = fmt::format("trunk.stages.{}.{}.", s, b);
    const char* conv = "standardized_conv2d/kernel";
    layout->Conv(unit + "a/" + conv, 1, in, mid, ours + "conv1.weight");
    layout->Conv(unit + "b/" + conv, 3, mid, mid, ours + "conv2.weight");
    layout->Conv(unit + "c/" + conv, 1, mid, out, ours + "conv3.weight");
    AddNorm(layout, unit + "a/group_norm/", true, in, ours + "norm1");
    AddNorm(layout, unit + "b/group_norm/", true, mid, ours + "norm2");
    AddNorm(layout, unit + "c/group_norm/", true, mid, ours + "norm3");
    if (projected) layout->Conv(unit + "a/proj/" + conv, 1, in, out, ours + "proj.weight");
  });
  const int64_t channels = ResNetOutputChannels(r);
  AddNorm(layout, "resnet/group_norm/", true, channels, "trunk.norm");
  layout->Dense("resnet/head/conv2d/kernel", {1, 1, channels, num_classes}, "head.weight", 3);
  layout->Plain("resnet/head/conv2d/bias", {num_classes}, "head.bias");
}

// The released hybrids' post-activation trunk (vit_jax's models_resnet).
void AddHybridTrunk(const ResNetConfig& r, LayoutBuilder* layout) {
  const int64_t stem_width = int64_t{r.base_width} * r.width_factor;
  layout->Conv("conv_root/kernel", r.small_stem ? 3 : 7, 3, stem_width, "backbone.stem.weight");
  AddNorm(layout, "gn_root/", false, stem_width, "backbone.stem_norm");
  ForEachUnit(r, [&](int s, int b, int64_t in, int64_t mid, int64_t out, bool projected) {
    const std::string unit = fmt::format("block{}/unit{}/", s + 1, b + 1);
    const std::string ours = fmt::format("backbone.stages.{}.{}.", s, b);
    layout->Conv(unit + "conv1/kernel", 1, in, mid, ours + "conv1.weight");
    layout->Conv(unit + "conv2/kernel", 3, mid, mid, ours + "conv2.weight");
    layout->Conv(unit + "conv3/kernel", 1, mid, out, ours + "conv3.weight");
    AddNorm(layout, unit + "gn1/", false, mid, ours + "norm1");
    AddNorm(layout, unit + "gn2/", false, mid, ours + "norm2");
    AddNorm(layout, unit + "gn3/", false, out, ours + "norm3");
    if (projected) {
      layout->Conv(unit + "conv_proj/kernel", 1, in, out, ours + "proj.weight");
      AddNorm(layout, unit + "gn_proj/", false, out, ours + "proj_norm");
    }
  });
}

void AddViT(const ModelConfig& config, int num_classes, int resolution, LayoutBuilder* layout) {
  const TransformerConfig& t = config.transformer;
  const int64_t d = t.width, heads = t.heads, head_dim = t.width / t.heads, mlp = t.mlp_dim;
  int64_t in_channels = 3;
  if (config.family == Family::kHybrid) {
    AddHybridTrunk(config.resnet, layout);
    in_channels = ResNetOutputChannels(config.resnet);
  }
  layout->Conv("embedding/kernel", t.patch, in_channels, d, "embedding.weight");
  layout->Plain("embedding/bias", {d}, "embedding.bias");
  const bool cls = config.pooling == Pooling::kClassToken;
  if (cls) layout->Plain("cls", {1, 1, d}, "cls");
  const int64_t tokens = SequenceLength(config, resolution) + (cls ? 1 : 0);
  layout->Plain("Transformer/posembed_input/pos_embedding", {1, tokens, d}, "pos_embedding");
  for (int i = 0; i < t.depth; ++i) {
    const std::string block = fmt::format("Transformer/encoderblock_{}/", i);
    const std::string attention = block + "MultiHeadDotProductAttention_1/";
    const std::string ours = fmt::format("blocks.{}.", i);
    AddNorm(layout, block + "LayerNorm_0/", false, d, ours + "norm1");
    const char* parts[] = {"query", "key", "value"};
    for (int j = 0; j < 3; ++j) {
      layout->Dense(attention + parts[j] + "/kernel", {d, heads, head_dim}, ours + "qkv.weight");
      layout->Rows(j * d, d);
      layout->Plain(attention + parts[j] + "/bias", {heads, head_dim}, ours + "qkv.bias");
      layout->Rows(j * d, d);
    }
    layout->Dense(attention + "out/kernel", {heads, head_dim, d}, ours + "proj.weight", 2);
    layout->Plain(attention + "out/bias", {d}, ours + "proj.bias");
    AddNorm(layout, block + "LayerNorm_2/", false, d, ours + "norm2");
    layout->Dense(block + "MlpBlock_3/Dense_0/kernel", {d, mlp}, ours + "fc1.weight");
    layout->Plain(block + "MlpBlock_3/Dense_0/bias", {mlp}, ours + "fc1.bias");
    layout->Dense(block + "MlpBlock_3/Dense_1/kernel", {mlp, d}, ours + "fc2.weight");
    layout->Plain(block + "MlpBlock_3/Dense_1/bias", {d}, ours + "fc2.bias");
  }
  AddNorm(layout, "Transformer/encoder_norm/", false, d, "norm");
  int64_t features = d;
  if (config.pre_logits > 0) {
    features = config.pre_logits;
    layout->Dense("pre_logits/kernel", {d, features}, "pre_logits.weight");
    layout->Plain("pre_logits/bias", {features}, "pre_logits.bias");
  }
  layout->Dense("head/kernel", {features, num_classes}, "head.weight");
  layout->Plain("head/bias", {num_classes}, "head.bias");
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

std::vector<NpzEntry> ReleasedLayout(const ModelConfig& config, int num_classes, int resolution) {
  LayoutBuilder layout;
  if (config.family == Family::kResNet) {
    AddBiT(config, num_classes, &layout);
  } else {
    AddViT(config, num_classes, resolution, &layout);
  }
  return layout.Take();
}

Expected<ReleasedFileShape> InferReleasedShape(
    const ModelConfig& config, const std::map<std::string, std::vector<int64_t>>& shapes,
    const std::string& path, int resnet_resolution) {
  auto find = [&shapes](const std::string& key) -> const std::vector<int64_t>* {
    auto it = shapes.find(key);
    return it == shapes.end() ? nullptr : &it->second;
  };
  const std::vector<int64_t>* bit_head = find("resnet/head/conv2d/kernel");
  const std::vector<int64_t>* vit_head = find("head/kernel");
  ReleasedFileShape shape;
  if (config.family == Family::kResNet) {
    if (bit_head == nullptr) {
      return InvalidArgument(fmt::format(
          "{} has no 'resnet/head/conv2d/kernel', so it is not a BiT file{}; '{}' is a BiT "
          "ResNet",
          path, vit_head ? " (it looks like a ViT or hybrid file: it has 'head/kernel')" : "",
          config.name));
    }
    if (bit_head->size() != 4) {
      return InvalidArgument(path + ": 'resnet/head/conv2d/kernel' is " + ShapeString(*bit_head) +
                             ", not a 1x1 convolution kernel (1, 1, in, classes)");
    }
    shape.num_classes = static_cast<int>(bit_head->back());
    shape.resolution = resnet_resolution;
    return shape;
  }
  if (vit_head == nullptr || vit_head->size() != 2) {
    return InvalidArgument(fmt::format(
        "{} has no 2-D 'head/kernel', so it is not a released ViT or hybrid file{}; '{}' is a {}",
        path,
        bit_head ? " (it looks like a BiT ResNet file: it has 'resnet/head/conv2d/kernel')" : "",
        config.name, FamilyName(config.family)));
  }
  shape.num_classes = static_cast<int>(vit_head->back());
  if (const std::vector<int64_t>* pre_logits = find("pre_logits/kernel")) {
    if (pre_logits->size() != 2) {
      return InvalidArgument(path + ": 'pre_logits/kernel' is " + ShapeString(*pre_logits) +
                             ", not (width, pre_logits)");
    }
    shape.pre_logits = static_cast<int>(pre_logits->back());
  }
  const std::vector<int64_t>* position = find("Transformer/posembed_input/pos_embedding");
  if (position == nullptr || position->size() != 3) {
    return InvalidArgument(path + " has no 3-D 'Transformer/posembed_input/pos_embedding'");
  }
  const int64_t tokens = (*position)[1] - (config.pooling == Pooling::kClassToken ? 1 : 0);
  const int64_t grid = std::llround(std::sqrt(static_cast<double>(std::max<int64_t>(tokens, 0))));
  if (tokens <= 0 || grid * grid != tokens) {
    return InvalidArgument(
        fmt::format("{}: {} position embeddings do not form a square grid", path, (*position)[1]));
  }
  shape.resolution = static_cast<int>(grid) * InputStride(config);
  return shape;
}

NpzMismatch CompareWithLayout(const std::vector<NpzEntry>& layout,
                              const std::map<std::string, std::vector<int64_t>>& shapes) {
  NpzMismatch mismatch;
  std::set<std::string> known;
  for (const NpzEntry& entry : layout) {
    known.insert(entry.key);
    auto it = shapes.find(entry.key);
    if (it == shapes.end()) {
      mismatch.missing.push_back(entry.key);
    } else if (it->second != entry.shape) {
      mismatch.wrong_shape.push_back(entry.key + " is " + ShapeString(it->second) +
                                     " in the file, " + ShapeString(entry.shape) + " in the model");
    }
  }
  for (const auto& [key, shape] : shapes) {
    if (!known.count(key)) mismatch.unexpected.push_back(key);
  }
  return mismatch;
}

std::string NpzMismatch::Describe() const {
  std::string message;
  auto add = [&message](const char* what, const std::vector<std::string>& items) {
    if (items.empty()) return;
    message += (message.empty() ? "" : "; ") + std::string(what) + ": " + ListSome(items);
  };
  add("missing keys", missing);
  add("unexpected keys", unexpected);
  add("wrong shapes", wrong_shape);
  return message;
}

}  // namespace vitscale::models
