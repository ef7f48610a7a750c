#include "models/config_json.h"

#include <string>
#include <vector>

namespace vitscale::models {

using nlohmann::json;

json ConventionsToJson(const Conventions& c) {
  return json{{"padding", PaddingName(c.padding)},
              {"gelu", GeluName(c.gelu)},
              {"std_conv_eps", c.std_conv_eps},
              {"std_conv_form", StdConvFormName(c.std_conv_form)},
              {"group_norm_eps", c.group_norm_eps}};
}

Expected<Conventions> ConventionsFromJson(const json& j, std::string_view what) {
  const std::string where(what);
  try {
    Conventions c;
    const std::string padding = j.at("padding").get<std::string>();
    if (padding == PaddingName(Padding::kSymmetric)) {
      c.padding = Padding::kSymmetric;
    } else if (padding == PaddingName(Padding::kSame)) {
      c.padding = Padding::kSame;
    } else if (padding == PaddingName(Padding::kFixed)) {
      c.padding = Padding::kFixed;
    } else {
      return Corruption(where + ": conventions.padding '" + padding +
                        "' is not symmetric, same or fixed");
    }
    const std::string gelu = j.at("gelu").get<std::string>();
    if (gelu != GeluName(Gelu::kExact) && gelu != GeluName(Gelu::kTanh)) {
      return Corruption(where + ": conventions.gelu '" + gelu + "' is not exact or tanh");
    }
    c.gelu = gelu == GeluName(Gelu::kTanh) ? Gelu::kTanh : Gelu::kExact;
    const std::string form = j.at("std_conv_form").get<std::string>();
    if (form != StdConvFormName(StdConvForm::kVariance) &&
        form != StdConvFormName(StdConvForm::kStd)) {
      return Corruption(where + ": conventions.std_conv_form '" + form +
                        "' is not variance or std");
    }
    c.std_conv_form =
        form == StdConvFormName(StdConvForm::kStd) ? StdConvForm::kStd : StdConvForm::kVariance;
    c.std_conv_eps = j.at("std_conv_eps").get<double>();
    c.group_norm_eps = j.at("group_norm_eps").get<double>();
    if (!(c.std_conv_eps >= 0) || !(c.group_norm_eps >= 0)) {
      return Corruption(where + ": conventions' epsilons must be >= 0");
    }
    return c;
  } catch (const std::exception& e) {
    return Corruption(where + ": bad conventions: " + e.what());
  }
}

json ModelConfigToJson(const ModelConfig& c) {
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
      {"conventions", ConventionsToJson(c.conventions)},
  };
}

Expected<ModelConfig> ModelConfigFromJson(const json& j, std::string_view what) {
  const std::string where(what);
  try {
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
      return Corruption(where + ": config.family '" + family + "' is unknown");
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
    if (j.contains("conventions")) {
      ASSIGN_OR_RETURN(c.conventions, ConventionsFromJson(j.at("conventions"), what));
    }
    return c;
  } catch (const std::exception& e) {
    return Corruption(where + ": bad model config: " + e.what());
  }
}

}  // namespace vitscale::models
