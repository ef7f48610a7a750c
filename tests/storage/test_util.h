// Helpers shared by the storage tests: a temp directory that cleans up after itself, and jobs
// shaped like the sweep expansion's.
#pragma once

#include <fmt/format.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "common/sha256.h"
#include "storage/records.h"

namespace vitscale::storage::testing {

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "vitscale-storage-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) ? pattern : "";
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline JobRecord MakeJob(const std::string& model, const std::string& dataset, int64_t subset,
                         double epochs, int seed = 0) {
  JobRecord job;
  job.config_json =
      fmt::format(R"({{"dataset":"{}","epochs":{},"model":"{}","seed":{},"subset":{}}})", dataset,
                  epochs, model, seed, subset);
  job.id = Sha256Hex(job.config_json);
  job.model = model;
  job.family = model.rfind("ViT", 0) == 0
                   ? "ViT"
                   : (model.find('+') != std::string::npos ? "hybrid" : "ResNet");
  job.dataset = dataset;
  job.subset_size = subset;
  job.epochs = epochs;
  job.planned_train_flops = 6.0 * 1e9 * static_cast<double>(subset) * epochs;
  job.ranks = 1;
  return job;
}

}  // namespace vitscale::storage::testing
