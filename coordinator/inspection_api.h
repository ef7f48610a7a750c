// A job's inspection views (docs/train-spec.md, "Inspection"; docs/api.md, "Inspection"): the
// files the trainer wrote into <runs>/<job>/inspection/, listed and served for the dashboard and
// scripts. Only the fixed set of names the trainer writes can be asked for, and neither the
// folder nor the file is reached through a link, so no request reaches any other file.
//
// Threading: io thread only.
#pragma once

#include <string_view>

#include "coordinator/core.h"

namespace vitscale::coordinator {

// The files a job's inspection may hold, "<view>.<ext>" (the trainer prefixes each with the
// job id's first 12 digits on disk).
inline constexpr std::string_view kInspectionFiles[] = {
    "filters.json",
    "filters.png",
    "position-similarity.json",
    "position-similarity.png",
    "attention-distance.json",
    "attention-distance.svg",
    "attention-rollout.json",
    "attention-rollout.png",
};
// Larger files are refused rather than read into memory (a ViT-H's grids are a few MiB).
inline constexpr int64_t kMaxInspectionFileBytes = 64 << 20;

class InspectionApi {
 public:
  // REQUIRES: `core` outlives the InspectionApi.
  explicit InspectionApi(Core& core);

  void AddRoutes(Router& router);

 private:
  HttpResponse ListFiles(const HttpRequest& request);
  HttpResponse GetFile(const HttpRequest& request);

  Core& core_;
};

}  // namespace vitscale::coordinator
