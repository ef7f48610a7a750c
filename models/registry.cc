#include "models/registry.h"

#include <algorithm>

#include "common/names.h"

namespace vitscale::models {
namespace {

// Beyond these, int64 MAC counts could overflow for a custom config; no study comes near them.
constexpr int kMaxResolution = 4096;
constexpr int64_t kMaxSequenceLength = 65536;

struct ViTSize {
  const char* code;  // the {size} of ViT-{size}/{patch}
  int depth, width, mlp_dim, heads;
};

// Table 1 of the paper (B, L, H), Fig. 4's "b" (B with every hidden dimension halved: width,
// MLP and each head's width, 12 heads of 32), DeiT's Ti and S, and two smaller sizes for 28x28
// CPU studies.
constexpr ViTSize kViTSizes[] = {
    {"Mu", 4, 64, 256, 4},     {"Mi", 6, 128, 512, 4},    {"Ti", 12, 192, 768, 3},
    {"S", 12, 384, 1536, 6},   {"b", 12, 384, 1536, 12},  {"B", 12, 768, 3072, 12},
    {"L", 24, 1024, 4096, 16}, {"H", 32, 1280, 5120, 16},
};

struct ResNetDepth {
  int depth;
  bool small;  // the "s" variants: three stages, 3x3 stride-1 stem
  std::vector<int> blocks;
};

// BiT's depths (the paper's Sec. 4.4) and the three-stage small-image ResNets, depth = 9n + 2.
const std::vector<ResNetDepth>& ResNetDepths() {
  static const std::vector<ResNetDepth> depths = {
      {50, false, {3, 4, 6, 3}},    {101, false, {3, 4, 23, 3}}, {152, false, {3, 8, 36, 3}},
      {200, false, {3, 24, 36, 3}}, {11, true, {1, 1, 1}},       {20, true, {2, 2, 2}},
      {29, true, {3, 3, 3}},
  };
  return depths;
}

// Every registered name: the paper's study first (Sec. 4.4 order), then the rest of Table 1's
// size x patch grid, then the small variants.
const std::vector<std::string>& RegisteredNames() {
  // clang-format off
  static const std::vector<std::string> names = {
      // The paper's scaling study.
      "ViT-B/32", "ViT-B/16", "ViT-L/32", "ViT-L/16", "ViT-H/14",
      "R50x1", "R50x2", "R101x1", "R152x1", "R152x2", "R200x3",
      "R50+ViT-B/32", "R50+ViT-B/16", "R50+ViT-L/32", "R50+ViT-L/16",
      // The rest of Table 1's sizes x patches.
      "ViT-B/14", "ViT-L/14", "ViT-H/16", "ViT-H/32",
      // Fig. 4's ViT-b/32, and the widths BiT released that the study does not train.
      "ViT-b/32", "R50x3", "R101x3", "R152x4",
      // Small variants for 28x28 inputs.
      "ViT-Mu/4", "ViT-Mu/7", "ViT-Mi/4", "ViT-Mi/7", "ViT-Ti/4", "ViT-Ti/7", "ViT-S/4", "ViT-S/7",
      "R11s", "R20s", "R29s", "R20sx2",
      "R11s+ViT-Mu/4", "R20s+ViT-Mi/4",
  };
  // clang-format on
  return names;
}

// Parses a positive decimal integer that is the whole of `text`.
bool ParsePositive(std::string_view text, int* value) {
  if (text.empty() || text.size() > 6) return false;
  int v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v <= 0) return false;
  *value = v;
  return true;
}

// "ViT-{size}/{number}" → transformer config; `number` is left to the caller.
bool DecodeViT(std::string_view text, TransformerConfig* transformer, int* number) {
  constexpr std::string_view kPrefix = "ViT-";
  if (text.substr(0, kPrefix.size()) != kPrefix) return false;
  text.remove_prefix(kPrefix.size());
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return false;
  std::string_view size = text.substr(0, slash);
  if (!ParsePositive(text.substr(slash + 1), number)) return false;
  for (const ViTSize& s : kViTSizes) {
    if (size != s.code) continue;
    transformer->depth = s.depth;
    transformer->width = s.width;
    transformer->mlp_dim = s.mlp_dim;
    transformer->heads = s.heads;
    return true;
  }
  return false;
}

// "R{depth}x{wf}", "R{depth}" (width factor 1, as in the hybrids' "R50"), "R{depth}s[x{wf}]".
bool DecodeResNet(std::string_view text, ResNetConfig* resnet) {
  if (text.empty() || text[0] != 'R') return false;
  text.remove_prefix(1);
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  int depth = 0;
  if (!ParsePositive(text.substr(0, digits), &depth)) return false;
  text.remove_prefix(digits);
  bool small = !text.empty() && text[0] == 's';
  if (small) text.remove_prefix(1);
  int width_factor = 1;
  if (!text.empty()) {
    if (text[0] != 'x' || !ParsePositive(text.substr(1), &width_factor)) return false;
  }
  for (const ResNetDepth& d : ResNetDepths()) {
    if (d.depth != depth || d.small != small) continue;
    resnet->blocks = d.blocks;
    resnet->width_factor = width_factor;
    if (small) {
      // Sized for 28x28: 16 stem channels keep the first stage's 28x28 maps cheap on a CPU.
      resnet->base_width = 16;
      resnet->small_stem = true;
      resnet->groupnorm_groups = 8;
    }
    return true;
  }
  return false;
}

bool Decode(std::string_view name, ModelConfig* config) {
  config->name = std::string(name);
  size_t plus = name.find('+');
  if (plus != std::string_view::npos) {
    config->family = Family::kHybrid;
    int stride = 0;
    if (!DecodeResNet(name.substr(0, plus), &config->resnet)) return false;
    if (!DecodeViT(name.substr(plus + 1), &config->transformer, &stride)) return false;
    config->transformer.patch = 1;
    // Option (i): the backbone's own stride. Option (ii): half of it, by moving the last stage's
    // blocks into the stage before it (R50 [3,4,6,3] → [3,4,9]).
    int full_stride = ResNetStride(config->resnet);
    if (stride == full_stride / 2 && config->resnet.blocks.size() >= 2) {
      std::vector<int>& blocks = config->resnet.blocks;
      blocks[blocks.size() - 2] += blocks.back();
      blocks.pop_back();
    } else if (stride != full_stride) {
      return false;
    }
    return true;
  }
  if (name.substr(0, 4) == "ViT-") {
    config->family = Family::kViT;
    return DecodeViT(name, &config->transformer, &config->transformer.patch);
  }
  config->family = Family::kResNet;
  config->pooling = Pooling::kGlobalAverage;
  return DecodeResNet(name, &config->resnet);
}

int64_t Square(int64_t x) { return x * x; }
int64_t CeilHalf(int64_t x) { return (x + 1) / 2; }

// Parameters and MACs of a ResNet trunk (stem and stages; no final norm, no head) at `size`.
// `preact`: BiT v2 units (norm on each conv's input); otherwise the hybrids' units (norm on each
// conv's output, a norm after the stem and after the projection).
struct TrunkCost {
  int64_t params = 0;
  int64_t macs = 0;
  int64_t out_size = 0;  // side of the output feature map
  int64_t out_channels = 0;
};

TrunkCost ResNetTrunkCost(const ResNetConfig& resnet, int64_t size, bool preact) {
  TrunkCost cost;
  const int64_t stem_width = int64_t{resnet.base_width} * resnet.width_factor;
  const int64_t stem_kernel = resnet.small_stem ? 3 : 7;
  if (!resnet.small_stem) size = CeilHalf(size);
  cost.params += Square(stem_kernel) * 3 * stem_width;
  cost.macs += Square(size) * Square(stem_kernel) * 3 * stem_width;
  if (!preact) cost.params += 2 * stem_width;
  if (!resnet.small_stem) size = CeilHalf(size);  // 3x3/2 max-pool
  int64_t in = stem_width;
  for (size_t s = 0; s < resnet.blocks.size(); ++s) {
    const int64_t mid = stem_width << s;
    const int64_t out = 4 * mid;
    for (int b = 0; b < resnet.blocks[s]; ++b) {
      const bool strided = b == 0 && s > 0;
      const int64_t out_size = strided ? CeilHalf(size) : size;
      cost.params += in * mid + 9 * mid * mid + mid * out;
      cost.macs += Square(size) * in * mid + Square(out_size) * (9 * mid * mid + mid * out);
      cost.params += 2 * (preact ? in + mid + mid : mid + mid + out);
      if (strided || in != out) {
        cost.params += in * out + (preact ? 0 : 2 * out);
        cost.macs += Square(out_size) * in * out;
      }
      in = out;
      size = out_size;
    }
  }
  cost.out_size = size;
  cost.out_channels = in;
  return cost;
}

// The transformer from its input tokens on: [class] token, position embeddings, blocks, final
// LayerNorm, pre_logits and head. The patch (or hybrid) embedding is the caller's.
ModelCost TransformerCost(const ModelConfig& config, int64_t patches, int num_classes) {
  const TransformerConfig& t = config.transformer;
  const int64_t d = t.width;
  const int64_t mlp = t.mlp_dim;
  const bool cls = config.pooling == Pooling::kClassToken;
  const int64_t tokens = patches + (cls ? 1 : 0);
  ModelCost cost;
  cost.params += (cls ? d : 0) + tokens * d;
  const int64_t block_params =
      2 * d + 3 * (d * d + d) + (d * d + d) + 2 * d + (d * mlp + mlp) + (mlp * d + d);
  const int64_t block_macs = tokens * d * 3 * d + tokens * d * d + 2 * tokens * d * mlp +
                             2 * Square(tokens) * d;  // QK^T and AV
  cost.params += t.depth * block_params + 2 * d;
  cost.forward_macs += t.depth * block_macs;
  int64_t features = d;
  if (config.pre_logits > 0) {
    cost.params += d * config.pre_logits + config.pre_logits;
    cost.forward_macs += d * config.pre_logits;
    features = config.pre_logits;
  }
  cost.params += features * num_classes + num_classes;
  cost.forward_macs += features * num_classes;
  return cost;
}

std::string Quoted(const ModelConfig& config) {
  return config.name.empty() ? std::string("model config") : "model '" + config.name + "'";
}

Status CheckResNetConfig(const ModelConfig& config) {
  const ResNetConfig& r = config.resnet;
  if (r.blocks.empty()) return InvalidArgument(Quoted(config) + ": resnet.blocks is empty");
  for (int b : r.blocks) {
    if (b <= 0) return InvalidArgument(Quoted(config) + ": resnet.blocks has a count <= 0");
  }
  if (r.blocks.size() > 6) {
    return InvalidArgument(Quoted(config) + ": resnet.blocks has more than 6 stages");
  }
  if (r.width_factor <= 0 || r.base_width <= 0 || r.groupnorm_groups <= 0) {
    return InvalidArgument(Quoted(config) +
                           ": resnet.width_factor, base_width and groupnorm_groups must be > 0");
  }
  // Every norm sees a multiple of the stem width, so this one check covers them all.
  if ((r.base_width * r.width_factor) % r.groupnorm_groups != 0) {
    return InvalidArgument(
        Quoted(config) + ": stem width " + std::to_string(r.base_width * r.width_factor) +
        " is not divisible by groupnorm_groups " + std::to_string(r.groupnorm_groups));
  }
  return Status::Ok();
}

Status CheckTransformerConfig(const ModelConfig& config) {
  const TransformerConfig& t = config.transformer;
  if (t.depth <= 0 || t.width <= 0 || t.mlp_dim <= 0 || t.heads <= 0 || t.patch <= 0) {
    return InvalidArgument(Quoted(config) +
                           ": transformer depth, width, mlp_dim, heads and patch must be > 0");
  }
  if (t.width % t.heads != 0) {
    return InvalidArgument(Quoted(config) + ": transformer width " + std::to_string(t.width) +
                           " is not divisible by heads " + std::to_string(t.heads));
  }
  if (config.pre_logits < 0) return InvalidArgument(Quoted(config) + ": pre_logits must be >= 0");
  return Status::Ok();
}

}  // namespace

const char* PaddingName(Padding padding) {
  switch (padding) {
    case Padding::kSymmetric:
      return "symmetric";
    case Padding::kSame:
      return "same";
    case Padding::kFixed:
      return "fixed";
  }
  return "unknown";
}

const char* GeluName(Gelu gelu) { return gelu == Gelu::kTanh ? "tanh" : "exact"; }

const char* StdConvFormName(StdConvForm form) {
  return form == StdConvForm::kStd ? "std" : "variance";
}

bool Conventions::operator==(const Conventions& other) const {
  return padding == other.padding && gelu == other.gelu && std_conv_eps == other.std_conv_eps &&
         std_conv_form == other.std_conv_form && group_norm_eps == other.group_norm_eps;
}

Conventions ReleasedViTConventions() {
  Conventions c;
  c.padding = Padding::kSame;  // flax's nn.Conv and nn.max_pool default
  c.gelu = Gelu::kTanh;        // flax's nn.gelu default
  c.std_conv_eps = 1e-5;
  c.std_conv_form = StdConvForm::kStd;
  c.group_norm_eps = 1e-6;  // flax's nn.GroupNorm default
  return c;
}

Conventions ReleasedBiTConventions() {
  Conventions c;
  c.padding = Padding::kFixed;
  c.std_conv_eps = 1e-10;
  c.std_conv_form = StdConvForm::kVariance;
  c.group_norm_eps = 1e-5;
  return c;
}

Conventions ReleasedConventions(Family family) {
  return family == Family::kResNet ? ReleasedBiTConventions() : ReleasedViTConventions();
}

const char* FamilyName(Family family) {
  switch (family) {
    case Family::kViT:
      return "ViT";
    case Family::kResNet:
      return "ResNet";
    case Family::kHybrid:
      return "hybrid";
  }
  return "unknown";
}

int ResNetStride(const ResNetConfig& resnet) {
  if (resnet.blocks.empty()) return 1;
  return (resnet.small_stem ? 1 : 4) << (resnet.blocks.size() - 1);
}

int ResNetOutputChannels(const ResNetConfig& resnet) {
  if (resnet.blocks.empty()) return resnet.base_width * resnet.width_factor;
  return 4 * (resnet.base_width * resnet.width_factor << (resnet.blocks.size() - 1));
}

const std::vector<std::string>& ModelNames() { return RegisteredNames(); }

Expected<ModelConfig> LookupModel(std::string_view name) {
  const std::vector<std::string>& names = RegisteredNames();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    return NotFound("unknown model '" + std::string(name) + "'" + DidYouMean(name, names) +
                    " (`vitscale models` lists every name)");
  }
  ModelConfig config;
  if (!Decode(name, &config)) {
    return Internal("registered model '" + std::string(name) + "' does not decode");
  }
  return config;
}

InputShape ReferenceInput(const ModelConfig& config) {
  const bool small =
      config.family == Family::kViT ? config.transformer.patch <= 7 : config.resnet.small_stem;
  return small ? InputShape{28, 10} : InputShape{224, 1000};
}

int InputStride(const ModelConfig& config) {
  switch (config.family) {
    case Family::kViT:
      return config.transformer.patch;
    case Family::kHybrid:
      return config.transformer.patch * ResNetStride(config.resnet);
    case Family::kResNet:
      return 1;
  }
  return 1;
}

int SequenceLength(const ModelConfig& config, int resolution) {
  if (config.family == Family::kResNet) return 0;
  const int stride = InputStride(config);
  if (stride <= 0) return 0;
  return (resolution / stride) * (resolution / stride);
}

Status CheckShape(const ModelConfig& config, int resolution, int num_classes) {
  if (num_classes <= 0) {
    return InvalidArgument(Quoted(config) + ": num_classes is " + std::to_string(num_classes) +
                           "; it must be at least 1");
  }
  if (resolution <= 0 || resolution > kMaxResolution) {
    return InvalidArgument(Quoted(config) + ": resolution " + std::to_string(resolution) +
                           " is outside 1.." + std::to_string(kMaxResolution));
  }
  if (config.family != Family::kViT) RETURN_IF_ERROR(CheckResNetConfig(config));
  if (config.family == Family::kResNet) {
    // Convolutions pad by kernel/2, so any size works; below the stride the map is 1x1 anyway.
    return Status::Ok();
  }
  RETURN_IF_ERROR(CheckTransformerConfig(config));
  const int stride = InputStride(config);
  const char* what = config.family == Family::kHybrid ? "backbone stride" : "patch size";
  if (resolution % stride != 0) {
    int lower = resolution / stride * stride;
    return InvalidArgument(Quoted(config) + ": resolution " + std::to_string(resolution) +
                           " is not divisible by the " + what + " " + std::to_string(stride) +
                           "; use a multiple such as " +
                           std::to_string(lower > 0 ? lower : stride) + " or " +
                           std::to_string(lower + stride));
  }
  if (SequenceLength(config, resolution) > kMaxSequenceLength) {
    return InvalidArgument(Quoted(config) + ": resolution " + std::to_string(resolution) +
                           " gives more than " + std::to_string(kMaxSequenceLength) + " tokens");
  }
  return Status::Ok();
}

ModelCost ComputeCost(const ModelConfig& config, int resolution, int num_classes) {
  ModelCost cost;
  switch (config.family) {
    case Family::kResNet: {
      TrunkCost trunk = ResNetTrunkCost(config.resnet, resolution, /*preact=*/true);
      const int64_t channels = trunk.out_channels;
      cost.params = trunk.params + 2 * channels + channels * num_classes + num_classes;
      cost.forward_macs = trunk.macs + channels * num_classes;
      break;
    }
    case Family::kViT: {
      const int64_t d = config.transformer.width;
      const int64_t p = config.transformer.patch;
      const int64_t patches = Square(resolution / p);
      cost = TransformerCost(config, patches, num_classes);
      cost.params += p * p * 3 * d + d;
      cost.forward_macs += patches * p * p * 3 * d;
      break;
    }
    case Family::kHybrid: {
      TrunkCost trunk = ResNetTrunkCost(config.resnet, resolution, /*preact=*/false);
      const int64_t d = config.transformer.width;
      const int64_t p = config.transformer.patch;
      const int64_t grid = trunk.out_size / p;
      cost = TransformerCost(config, grid * grid, num_classes);
      cost.params += trunk.params + p * p * trunk.out_channels * d + d;
      cost.forward_macs += trunk.macs + grid * grid * p * p * trunk.out_channels * d;
      break;
    }
  }
  return cost;
}

}  // namespace vitscale::models
