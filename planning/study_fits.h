// The scaling-law fits of one sweep's study, from the result table (storage/results_table.h):
//  - per model family, error (1 - transfer accuracy) against pretraining compute: the Pareto
//    frontier of the family's finished jobs, fitted with planning/fit.h and bootstrapped over
//    the family's jobs (paper Fig. 5, with the curve);
//  - per model (and epochs, when a model ran at several), error against pretraining examples,
//    the mean over seeds per size, fitted the same way (paper Fig. 4).
// The coordinator serves it (GET /api/v1/study/{sweep}/fits) and `vitscale export --fits`
// prints it; the dashboard draws what the API returns.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "planning/fit.h"
#include "storage/results_table.h"

namespace vitscale::planning {

struct FitPointOf {
  std::string job;  // empty for a mean over several jobs
  std::string model;
  FitPoint point;
  int runs = 1;
};

struct GroupFit {
  std::string group;  // the family, or "model" / "model (N ep)"
  std::string family;
  std::vector<FitPointOf> points;
  std::vector<size_t> frontier;  // compute fits: the points fitted; data-size fits: all
  CurveFit fit;
};

struct StudyFits {
  std::string sweep;
  std::string column;               // "average" or a result column's title
  std::vector<GroupFit> compute;    // x = exaFLOPs
  std::vector<GroupFit> data_size;  // x = pretraining examples
};

// `column` is "average" (the mean over every transfer column) or one column's title;
// kInvalidArgument naming the columns for an unknown one.
Expected<StudyFits> FitStudy(const storage::ResultsTable& table, const std::string& column);
// Reads the table of `sweep` from the store, then FitStudy.
Expected<StudyFits> FitStudy(storage::Store& store, const std::string& sweep,
                             const std::string& column);

nlohmann::json ToJson(const StudyFits& fits);
// One row per fitted group: figure, group, points, a, b, c, d, RMSE, and the error predicted at
// 10x the largest x with its band; groups without a curve say why.
std::string FormatFits(const StudyFits& fits, storage::TableFormat format);

}  // namespace vitscale::planning
