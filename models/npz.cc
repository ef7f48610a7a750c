#include "models/npz.h"

#include <torch/types.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "models/npy.h"
#include "models/npz_layout.h"

namespace vitscale::models {
namespace {

// A layout entry with the part of the model's tensor it fills.
struct Bound {
  NpzEntry entry;
  torch::Tensor target;
};

int64_t Elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Expected<std::vector<Bound>> BindLayout(ModelImpl& model) {
  auto parameters = model.named_parameters(/*recurse=*/true);
  std::vector<Bound> bound;
  size_t covered = 0;
  std::map<std::string, int> seen;
  for (NpzEntry& entry : ReleasedLayout(model.config(), model.num_classes(), model.resolution())) {
    const torch::Tensor* parameter = parameters.find(entry.parameter);
    if (parameter == nullptr) {
      return Internal("the released layout of '" + model.name() + "' names parameter '" +
                      entry.parameter + "', which the model lacks");
    }
    torch::Tensor target =
        entry.rows < 0 ? *parameter : parameter->narrow(0, entry.first_row, entry.rows);
    if (target.numel() != Elements(entry.shape)) {
      return Internal("the released layout of '" + model.name() + "' gives " + entry.key + " " +
                      ShapeString(entry.shape) + " for parameter '" + entry.parameter +
                      "', which has " + std::to_string(target.numel()) + " elements there");
    }
    if (seen[entry.parameter]++ == 0) ++covered;
    bound.push_back({std::move(entry), target});
  }
  if (covered != parameters.size()) {
    return Internal("the released layout of '" + model.name() + "' covers " +
                    std::to_string(covered) + " of its " + std::to_string(parameters.size()) +
                    " parameters");
  }
  return bound;
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

torch::Tensor ToParameterLayout(const Bound& b, const torch::Tensor& npz) {
  switch (b.entry.layout) {
    case NpzLayout::kPlain:
      return npz.reshape(b.target.sizes());
    case NpzLayout::kDense: {
      int64_t in = 1;
      for (int i = 0; i < b.entry.in_dims; ++i) in *= b.entry.shape[i];
      return npz.reshape({in, -1}).t();
    }
    case NpzLayout::kConv:
      return npz.permute({3, 2, 0, 1});
  }
  return npz;
}

torch::Tensor ToNpzLayout(const Bound& b) {
  switch (b.entry.layout) {
    case NpzLayout::kPlain:
      return b.target.reshape(b.entry.shape);
    case NpzLayout::kDense:
      return b.target.t().reshape(b.entry.shape);
    case NpzLayout::kConv:
      return b.target.permute({2, 3, 1, 0});
  }
  return b.target;
}

}  // namespace

Status ImportNpz(ModelImpl& model, const std::string& path) {
  ASSIGN_OR_RETURN(std::vector<Bound> bound, BindLayout(model));
  ASSIGN_OR_RETURN(auto arrays, ReadNpz(path));
  std::vector<NpzEntry> layout;
  for (const Bound& b : bound) layout.push_back(b.entry);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [key, array] : arrays) shapes.emplace(key, array.shape);
  const NpzMismatch mismatch = CompareWithLayout(layout, shapes);
  if (!mismatch.empty()) {
    std::string message = path + " does not fit '" + model.name() + "' (" +
                          std::to_string(model.num_classes()) + " classes, resolution " +
                          std::to_string(model.resolution()) + "); " + mismatch.Describe();
    if (!mismatch.wrong_shape.empty() || !mismatch.unexpected.empty()) {
      message +=
          " (build the model with the file's class count and resolution, then "
          "ReplaceHead / ResizePositionEmbedding)";
    }
    return InvalidArgument(message);
  }
  try {
    // Convert everything before touching the model, so an error leaves it as it was.
    std::vector<torch::Tensor> values;
    values.reserve(bound.size());
    for (const Bound& b : bound)
      values.push_back(ToParameterLayout(b, ToTensor(arrays.at(b.entry.key))));
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < bound.size(); ++i) bound[i].target.copy_(values[i]);
  } catch (const std::exception& e) {
    return Internal(path + ": loading into '" + model.name() + "': " + e.what());
  }
  model.SetConventions(ReleasedConventions(model.config().family));
  return Status::Ok();
}

Status ExportNpz(ModelImpl& model, const std::string& path) {
  ASSIGN_OR_RETURN(std::vector<Bound> bound, BindLayout(model));
  std::map<std::string, NpyArray> arrays;
  try {
    torch::NoGradGuard no_grad;
    for (const Bound& b : bound) {
      torch::Tensor t = ToNpzLayout(b).to(torch::kCPU, torch::kFloat).contiguous();
      NpyArray array;
      array.dtype = NpyDtype::kFloat32;
      array.shape = b.entry.shape;
      array.data.assign(static_cast<const char*>(t.data_ptr()), t.numel() * sizeof(float));
      arrays.emplace(b.entry.key, std::move(array));
    }
  } catch (const std::exception& e) {
    return Internal("exporting '" + model.name() + "': " + e.what());
  }
  return WriteNpz(path, arrays);
}

}  // namespace vitscale::models
