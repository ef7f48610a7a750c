#include "trainer/inspection.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "data/image_codec.h"
#include "models/registry.h"

namespace vitscale::trainer {
namespace {

using nlohmann::json;
using Rgb = std::array<uint8_t, 3>;

// A tensor of any rank as nested JSON arrays of numbers.
json ToJson(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kDouble).contiguous();
  if (c.dim() == 0) return c.item<double>();
  json out = json::array();
  for (int64_t i = 0; i < c.size(0); ++i) out.push_back(ToJson(c[i]));
  return out;
}

// Viridis, from five of its stops: dark blue for 0, yellow for 1.
Rgb Viridis(double x) {
  static constexpr std::array<std::array<double, 3>, 5> kStops = {
      {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}}};
  x = std::clamp(std::isfinite(x) ? x : 0.0, 0.0, 1.0) * (kStops.size() - 1);
  const size_t i = std::min(static_cast<size_t>(x), kStops.size() - 2);
  const double f = x - static_cast<double>(i);
  Rgb rgb;
  for (int c = 0; c < 3; ++c) {
    rgb[c] = static_cast<uint8_t>(std::lround(kStops[i][c] * (1 - f) + kStops[i + 1][c] * f));
  }
  return rgb;
}

// An RGB picture built from cells of a grid, for the PNG files.
class Canvas {
 public:
  Canvas(int width, int height) : image_{height, width, 3, {}} {
    image_.pixels.assign(static_cast<size_t>(width) * height * 3, 255);
  }
  void Put(int x, int y, Rgb rgb) {
    if (x < 0 || y < 0 || x >= image_.width || y >= image_.height) return;
    uint8_t* p = &image_.pixels[(static_cast<size_t>(y) * image_.width + x) * 3];
    std::copy(rgb.begin(), rgb.end(), p);
  }
  // `values` (h, w) in [0, 1] through the colour map, each value a scale x scale block.
  void DrawMap(const torch::Tensor& values, int left, int top, int scale) {
    torch::Tensor v = values.to(torch::kDouble).contiguous();
    for (int64_t y = 0; y < v.size(0); ++y) {
      for (int64_t x = 0; x < v.size(1); ++x)
        Block(left, top, x, y, scale, Viridis(v[y][x].item<double>()));
    }
  }
  // `rgb` (3, h, w) in [0, 1], each pixel a scale x scale block.
  void DrawRgb(const torch::Tensor& rgb, int left, int top, int scale) {
    torch::Tensor v =
        (rgb.to(torch::kDouble).clamp(0, 1) * 255).round().to(torch::kUInt8).contiguous();
    auto a = v.accessor<uint8_t, 3>();
    for (int64_t y = 0; y < v.size(1); ++y) {
      for (int64_t x = 0; x < v.size(2); ++x)
        Block(left, top, x, y, scale, {a[0][y][x], a[1][y][x], a[2][y][x]});
    }
  }
  Expected<std::string> Png() const { return data::EncodePng(image_); }

 private:
  void Block(int left, int top, int64_t x, int64_t y, int scale, Rgb rgb) {
    for (int dy = 0; dy < scale; ++dy) {
      for (int dx = 0; dx < scale; ++dx) Put(left + x * scale + dx, top + y * scale + dy, rgb);
    }
  }

  data::Image image_;
};

// Scales each (c, h, w) slice of x to [0, 1] by its own minimum and maximum.
torch::Tensor MinMax(const torch::Tensor& x) {
  torch::Tensor flat = x.reshape({x.size(0), -1}).to(torch::kDouble);
  torch::Tensor low = std::get<0>(flat.min(1, true)), high = std::get<0>(flat.max(1, true));
  return ((flat - low) / (high - low).clamp_min(1e-12)).reshape(x.sizes());
}

class Writer {
 public:
  Writer(const InspectionOptions& options) : options_(options) {}
  Status Init() {
    std::error_code error;
    std::filesystem::create_directories(options_.dir, error);
    if (error) return IOError("cannot create " + options_.dir + ": " + error.message());
    return Status::Ok();
  }
  // Writes <dir>/<prefix>-<name>.<extension> and records it in `view`.
  Status Write(InspectionView* view, const std::string& extension, const std::string& content) {
    const std::string path = (std::filesystem::path(options_.dir) /
                              (options_.prefix + "-" + view->name + "." + extension))
                                 .string();
    RETURN_IF_ERROR(WriteFileAtomically(path, content));
    view->files.push_back(path);
    return Status::Ok();
  }
  Status WritePng(InspectionView* view, const Canvas& canvas) {
    ASSIGN_OR_RETURN(std::string png, canvas.Png());
    return Write(view, "png", png);
  }

 private:
  const InspectionOptions& options_;
};

int64_t PrefixTokens(const models::ViTImpl& model) { return model.cls.defined() ? 1 : 0; }

// Fig. 7 left: the filters' principal components, largest first, each with its share of the
// variance; signs fixed so that each component's largest entry is positive.
Status Filters(models::ViTImpl& model, const InspectionOptions& options, Writer& writer,
               InspectionView* view) {
  torch::Tensor weight = model.named_parameters()["embedding.weight"].detach().to(torch::kCPU);
  const int64_t channels = weight.size(1), patch = weight.size(2);
  torch::Tensor x = weight.reshape({weight.size(0), -1}).to(torch::kDouble);
  x = x - x.mean(0, true);
  auto [u, s, vh] = torch::linalg_svd(x, /*full_matrices=*/false);
  const int64_t k = std::min<int64_t>(options.components, vh.size(0));
  torch::Tensor components = vh.narrow(0, 0, k).clone();
  torch::Tensor largest = components.gather(1, components.abs().argmax(1, true));
  components = components * largest.sign();
  torch::Tensor variance = s.pow(2) / s.pow(2).sum();
  components = components.reshape({k, channels, patch, patch});
  json out = {{"patch", patch},
              {"channels", channels},
              {"explained_variance", ToJson(variance.narrow(0, 0, k))},
              {"components", ToJson(components)}};
  RETURN_IF_ERROR(writer.Write(view, "json", out.dump()));

  const int scale = std::max<int>(1, 32 / static_cast<int>(patch));
  const int cell = static_cast<int>(patch) * scale + 2, columns = 7;
  const int rows = static_cast<int>((k + columns - 1) / columns);
  Canvas canvas(columns * cell + 2, rows * cell + 2);
  torch::Tensor drawn = MinMax(components);
  if (channels == 1) drawn = drawn.expand({k, 3, patch, patch});
  for (int64_t i = 0; i < k; ++i) {
    canvas.DrawRgb(drawn[i].narrow(0, 0, 3), 2 + static_cast<int>(i % columns) * cell,
                   2 + static_cast<int>(i / columns) * cell, scale);
  }
  return writer.WritePng(view, canvas);
}

// Fig. 7 centre: for each patch, the cosine similarity of its position embedding with every
// patch's, as a grid x grid map placed at the patch's own position.
Status PositionSimilarity(models::ViTImpl& model, Writer& writer, InspectionView* view) {
  const int64_t grid = model.GridSize(model.resolution());
  torch::Tensor pos = model.pos_embedding.detach().to(torch::kCPU, torch::kDouble)[0];
  pos = pos.narrow(0, PrefixTokens(model), grid * grid);
  pos = pos / pos.norm(2, 1, true).clamp_min(1e-12);
  torch::Tensor similarity = pos.matmul(pos.t());
  json out = {{"grid", grid}, {"similarity", ToJson(similarity)}};
  RETURN_IF_ERROR(writer.Write(view, "json", out.dump()));

  const int scale = std::max<int>(1, 48 / static_cast<int>(grid));
  const int cell = static_cast<int>(grid) * scale + 2;
  Canvas canvas(static_cast<int>(grid) * cell + 2, static_cast<int>(grid) * cell + 2);
  for (int64_t i = 0; i < grid * grid; ++i) {
    canvas.DrawMap((similarity[i].reshape({grid, grid}) + 1) / 2,
                   2 + static_cast<int>(i % grid) * cell, 2 + static_cast<int>(i / grid) * cell,
                   scale);
  }
  return writer.WritePng(view, canvas);
}

// Fig. 7 right / Fig. 11, drawn as the paper does: one dot per head at its layer.
std::string DistanceSvg(const torch::Tensor& distance, double resolution,
                        const std::string& title) {
  const int64_t layers = distance.size(0), heads = distance.size(1);
  const double width = 480, height = 320, left = 60, right = 20, top = 30, bottom = 50;
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  auto x_of = [&](double layer) { return left + (layer - 0.5) / layers * plot_w; };
  auto y_of = [&](double pixels) { return top + plot_h * (1 - pixels / resolution); };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"18\" text-anchor=\"middle\">{3}</text>\n",
      width, height, left + plot_w / 2, title);
  svg += fmt::format(
      "<g stroke=\"black\"><line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\"/>"
      "<line x1=\"{0}\" y1=\"{3}\" x2=\"{0}\" y2=\"{1}\"/></g>\n",
      left, top + plot_h, left + plot_w, top);
  for (int i = 0; i <= 4; ++i) {
    const double pixels = resolution * i / 4;
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:g}</text>\n", left - 6,
                       y_of(pixels) + 4, std::round(pixels));
  }
  const int64_t step = std::max<int64_t>(1, layers / 12);
  for (int64_t l = 1; l <= layers; l += step) {
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", x_of(l),
                       top + plot_h + 16, l);
  }
  svg +=
      fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">Network depth (layer)</text>\n",
                  left + plot_w / 2, height - 10);
  svg += fmt::format(
      "<text transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">"
      "Mean attention distance (pixels)</text>\n",
      top + plot_h / 2);
  auto d = distance.to(torch::kDouble).contiguous();
  for (int64_t l = 0; l < layers; ++l) {
    for (int64_t h = 0; h < heads; ++h) {
      const Rgb rgb = Viridis(heads > 1 ? static_cast<double>(h) / (heads - 1) : 0.0);
      svg += fmt::format(
          "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"rgb({},{},{})\" "
          "fill-opacity=\"0.8\"><title>layer {} head {}: {:.1f} px</title></circle>\n",
          x_of(l + 1), y_of(d[l][h].item<double>()), rgb[0], rgb[1], rgb[2], l + 1, h + 1,
          d[l][h].item<double>());
    }
  }
  return svg + "</svg>\n";
}

Status AttentionDistance(models::ViTImpl& model, const std::vector<torch::Tensor>& weights,
                         Writer& writer, InspectionView* view) {
  const int64_t grid = model.GridSize(model.resolution());
  const double stride = models::InputStride(model.config());
  std::vector<torch::Tensor> per_layer;
  for (const torch::Tensor& w : weights) {
    per_layer.push_back(MeanAttentionDistance(w, grid, PrefixTokens(model), stride));
  }
  torch::Tensor distance = torch::stack(per_layer);  // (layers, heads)
  json out = {{"layers", distance.size(0)},        {"heads", distance.size(1)},
              {"images", weights.front().size(0)}, {"resolution", model.resolution()},
              {"pixels_per_token", stride},        {"distance", ToJson(distance)}};
  RETURN_IF_ERROR(writer.Write(view, "json", out.dump()));
  return writer.Write(view, "svg", DistanceSvg(distance, model.resolution(), model.name()));
}

// Fig. 6 / 14: each image, then the image weighted by its rollout map, then the map itself.
Status Rollout(models::ViTImpl& model, const torch::Tensor& images,
               const std::vector<torch::Tensor>& weights, int64_t count, Writer& writer,
               InspectionView* view) {
  const int64_t grid = model.GridSize(model.resolution());
  const int64_t prefix = PrefixTokens(model);
  std::vector<torch::Tensor> first;
  for (const torch::Tensor& w : weights) first.push_back(w.narrow(0, 0, count));
  torch::Tensor rollout = AttentionRollout(first);
  // With a [class] token, its row; with average pooling, the mean over the patches' rows.
  torch::Tensor maps = prefix > 0 ? rollout.select(1, 0).narrow(1, prefix, grid * grid)
                                  : rollout.narrow(2, prefix, grid * grid).mean(1);
  maps = maps / std::get<0>(maps.max(1, true)).clamp_min(1e-12);
  maps = maps.reshape({count, grid, grid});
  json out = {{"images", count}, {"grid", grid}, {"maps", ToJson(maps)}};
  RETURN_IF_ERROR(writer.Write(view, "json", out.dump()));

  const int64_t resolution = model.resolution();
  const int scale = std::max<int>(1, 128 / static_cast<int>(resolution));
  const int cell = static_cast<int>(resolution) * scale + 4;
  Canvas canvas(3 * cell + 4, static_cast<int>(count) * cell + 4);
  torch::Tensor pictures = MinMax(images.narrow(0, 0, count).to(torch::kCPU));
  namespace F = torch::nn::functional;
  torch::Tensor masks = F::interpolate(maps.unsqueeze(1).to(torch::kFloat),
                                       F::InterpolateFuncOptions()
                                           .size(std::vector<int64_t>{resolution, resolution})
                                           .mode(torch::kBilinear)
                                           .align_corners(false))
                            .to(torch::kDouble);
  for (int64_t i = 0; i < count; ++i) {
    const int y = 4 + static_cast<int>(i) * cell;
    canvas.DrawRgb(pictures[i], 4, y, scale);
    canvas.DrawRgb(pictures[i] * masks[i], 4 + cell, y, scale);
    canvas.DrawMap(masks[i][0], 4 + 2 * cell, y, scale);
  }
  return writer.WritePng(view, canvas);
}

}  // namespace

torch::Tensor MeanAttentionDistance(const torch::Tensor& weights, int64_t grid, int64_t prefix,
                                    double stride) {
  torch::Tensor rows = torch::arange(grid * grid, torch::kDouble).div(grid).floor();
  torch::Tensor cols = torch::arange(grid * grid, torch::kDouble).remainder(grid);
  torch::Tensor distance = (rows.unsqueeze(1) - rows.unsqueeze(0))
                               .pow(2)
                               .add((cols.unsqueeze(1) - cols.unsqueeze(0)).pow(2))
                               .sqrt()
                               .mul(stride);  // (patches, patches) in input pixels
  torch::Tensor w = weights.to(torch::kCPU, torch::kDouble)
                        .narrow(2, prefix, grid * grid)
                        .narrow(3, prefix, grid * grid);
  w = w / w.sum(-1, true).clamp_min(1e-30);
  return (w * distance).sum(-1).mean(std::vector<int64_t>{0, 2});  // per head
}

torch::Tensor AttentionRollout(const std::vector<torch::Tensor>& weights) {
  torch::Tensor rollout;
  for (const torch::Tensor& w : weights) {
    torch::Tensor a = w.to(torch::kCPU, torch::kDouble).mean(1);  // heads averaged
    a = 0.5 * a + 0.5 * torch::eye(a.size(-1), torch::kDouble);
    a = a / a.sum(-1, true);
    rollout = rollout.defined() ? a.matmul(rollout) : a;
  }
  return rollout;
}

std::vector<std::string> InspectionViewNames(const models::ModelImpl& model) {
  std::vector<std::string> names;
  if (model.config().family == models::Family::kViT) names.push_back("filters");
  for (const char* name : {"position-similarity", "attention-distance", "attention-rollout"}) {
    names.push_back(name);
  }
  return names;
}

Expected<std::vector<InspectionView>> Inspect(
    models::ViTImpl& model, const torch::Tensor& images, const InspectionOptions& options,
    const std::function<Status(int index, int count)>& before_view) {
  if (images.size(0) < 1) return InvalidArgument("inspection needs at least one image");
  Writer writer(options);
  RETURN_IF_ERROR(writer.Init());
  const std::vector<std::string> names = InspectionViewNames(model);
  const int count = static_cast<int>(names.size());
  std::vector<InspectionView> views;
  std::vector<torch::Tensor> weights;
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard no_grad;
  try {
    for (int i = 0; i < count; ++i) {
      RETURN_IF_ERROR(before_view(i, count));
      InspectionView view{names[i], {}};
      if (names[i] == "filters") {
        RETURN_IF_ERROR(Filters(model, options, writer, &view));
      } else if (names[i] == "position-similarity") {
        RETURN_IF_ERROR(PositionSimilarity(model, writer, &view));
      } else {
        if (weights.empty()) {
          const int64_t n = std::min<int64_t>(images.size(0), options.distance_images);
          weights = model.AttentionWeights(images.narrow(0, 0, n));
        }
        if (names[i] == "attention-distance") {
          RETURN_IF_ERROR(AttentionDistance(model, weights, writer, &view));
        } else {
          const int64_t n = std::min<int64_t>(weights.front().size(0), options.rollout_images);
          RETURN_IF_ERROR(Rollout(model, images, weights, n, writer, &view));
        }
      }
      views.push_back(std::move(view));
    }
  } catch (const std::exception& e) {
    if (was_training) model.train();
    return Internal(std::string("inspection: ") + e.what());
  }
  if (was_training) model.train();
  return views;
}

}  // namespace vitscale::trainer
