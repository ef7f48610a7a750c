// Scaling-law fits: the saturating power law error(x) = a * (x + d)^(-b) + c, fitted by GSL's
// nonlinear least squares (gsl_multifit_nlinear, Levenberg-Marquardt), with a bootstrap band.
// x is pretraining compute (exaFLOPs) or pretraining examples. This is the one place vitscale
// fits curves: the coordinator serves the results, the export prints them, the dashboard only
// draws them (docs/planning.md).
//
// Plain functions over values: safe from any thread (GSL is called without global state).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace vitscale::planning {

struct FitPoint {
  double x = 0;      // > 0
  double error = 0;  // in (0, 1): 1 - accuracy
};

struct PowerLaw {
  double a = 0, b = 0, c = 0, d = 0;
  double Eval(double x) const;
};

inline constexpr int kPowerLawParameters = 4;

// Fits the points (at least kPowerLawParameters distinct x; kFailedPrecondition otherwise, with
// the counts). kInternal when no start converges. a, b, d >= 0 and c > 0 by construction.
// Without `start`, a grid of 12 starts is tried and the best end kept; with it (a bootstrap
// draw starting from the full fit), that start first, and the grid only if it breaks down.
Expected<PowerLaw> FitPowerLaw(const std::vector<FitPoint>& points,
                               const std::optional<PowerLaw>& start = std::nullopt);

// The points no other point beats: none with less or equal x and lower error. Sorted by x.
std::vector<size_t> ParetoFrontier(const std::vector<FitPoint>& points);

struct BandPoint {
  double x = 0;
  double fit = 0;
  std::optional<double> low, high;  // the 2.5th and 97.5th percentiles of the resampled fits
};

struct CurveFit {
  std::string status;   // "ok", "too_few_points", "failed"
  std::string message;  // why, for people, when not ok
  int points = 0;       // what the fit saw (after `select`)
  PowerLaw law;
  double rmse = 0;
  std::vector<BandPoint> curve;  // from the smallest x to 10x the largest
  double extrapolated_from = 0;  // the largest x seen: beyond it the curve is extrapolated
  int resamples = 0;             // bootstrap draws, and how many gave a fit
  int resamples_fitted = 0;
};

// Fits what `select` keeps of `points` (all of them when unset; the Pareto frontier, say), and
// bootstraps the band by drawing `points` with replacement `resamples` times (seeded: the same
// input gives the same band), applying `select` and fitting each draw. `select` is given points
// sorted by x, then error. Draws that select the same points share one fit (a fit depends on
// nothing else: each starts from the full fit).
CurveFit FitWithBand(
    const std::vector<FitPoint>& points,
    const std::function<std::vector<FitPoint>(const std::vector<FitPoint>&)>& select,
    int resamples = 200, uint64_t seed = 0);

nlohmann::json ToJson(const CurveFit& fit);

}  // namespace vitscale::planning
