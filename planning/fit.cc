#include "planning/fit.h"

#include <fmt/format.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_multifit_nlinear.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>

namespace vitscale::planning {
namespace {

// The fit runs in x / scale, with every parameter as an exponent so that a, b, c and d stay
// positive without bounds (GSL's solvers are unconstrained):
//   error = exp(p0) * (u + exp(p3))^(-exp(p1)) + exp(p2),  u = x / scale.
struct Data {
  std::vector<double> u, error;
};

double Model(const gsl_vector* p, double u) {
  double a = std::exp(gsl_vector_get(p, 0)), b = std::exp(gsl_vector_get(p, 1));
  double c = std::exp(gsl_vector_get(p, 2)), d = std::exp(gsl_vector_get(p, 3));
  return a * std::pow(u + d, -b) + c;
}

int Residuals(const gsl_vector* p, void* data, gsl_vector* f) {
  const Data& d = *static_cast<const Data*>(data);
  for (size_t i = 0; i < d.u.size(); ++i) {
    double r = Model(p, d.u[i]) - d.error[i];
    if (!std::isfinite(r)) return GSL_EDOM;
    gsl_vector_set(f, i, r);
  }
  return GSL_SUCCESS;
}

// The residuals' derivatives in the log-parameters: with g = a (u + d)^-b,
//   d/dp0 = g, d/dp1 = -b ln(u + d) g, d/dp2 = c, d/dp3 = -b d g / (u + d).
// Exact, so each iteration costs one evaluation instead of finite differences' five.
int Jacobian(const gsl_vector* p, void* data, gsl_matrix* J) {
  const Data& d = *static_cast<const Data*>(data);
  double a = std::exp(gsl_vector_get(p, 0)), b = std::exp(gsl_vector_get(p, 1));
  double c = std::exp(gsl_vector_get(p, 2)), shift = std::exp(gsl_vector_get(p, 3));
  for (size_t i = 0; i < d.u.size(); ++i) {
    double t = d.u[i] + shift;
    double g = a * std::pow(t, -b);
    double row[kPowerLawParameters] = {g, -b * std::log(t) * g, c, -b * shift * g / t};
    for (size_t k = 0; k < kPowerLawParameters; ++k) {
      if (!std::isfinite(row[k])) return GSL_EDOM;
      gsl_matrix_set(J, i, k, row[k]);
    }
  }
  return GSL_SUCCESS;
}

// Each run's limit. On data that do not saturate (error falling linearly, say) the best fit lies
// at infinity and runs end here, so the limit decides how far such fits go: fewer for the
// bootstrap's draws would narrow their band (by 6% at 100 on bench/scale's study).
constexpr int kMaxIterations = 300;

// One Levenberg-Marquardt run from `start`; the sum of squares, or nullopt when it broke down.
std::optional<double> Solve(Data& data, const std::vector<double>& start,
                            std::vector<double>* best) {
  const size_t n = data.u.size(), p = kPowerLawParameters;
  gsl_multifit_nlinear_fdf fdf{};
  fdf.f = Residuals;
  fdf.df = Jacobian;
  fdf.fvv = nullptr;
  fdf.n = n;
  fdf.p = p;
  fdf.params = &data;
  gsl_multifit_nlinear_parameters params = gsl_multifit_nlinear_default_parameters();
  // Four parameters: the normal equations' 4x4 Cholesky factorisation instead of a QR of the
  // whole Jacobian (the default) at each step. The log-parameters keep the system well scaled.
  params.solver = gsl_multifit_nlinear_solver_cholesky;
  gsl_multifit_nlinear_workspace* w =
      gsl_multifit_nlinear_alloc(gsl_multifit_nlinear_trust, &params, n, p);
  gsl_vector* x0 = gsl_vector_alloc(p);
  for (size_t i = 0; i < p; ++i) gsl_vector_set(x0, i, start[i]);
  auto sum_of_squares = [&] {
    gsl_vector* f = gsl_multifit_nlinear_residual(w);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += gsl_vector_get(f, i) * gsl_vector_get(f, i);
    return sum;
  };
  std::optional<double> cost;
  if (gsl_multifit_nlinear_init(x0, &fdf, w) == GSL_SUCCESS) {
    // GSL's driver loop, with one more way to stop: in the law's long flat valleys the steps
    // can stay large (so the step and gradient tests do not pass) once the cost, and with it
    // the curve, no longer moves; a run stops when the cost has stalled for a few steps.
    constexpr int kStalledSteps = 3;
    constexpr double kStalled = 1e-9;  // relative decrease of the cost per step
    double last = sum_of_squares();
    int stalled = 0;
    bool failed = false;
    for (int iteration = 0; iteration < kMaxIterations; ++iteration) {
      // No step from the start lowers the cost: the start is kept. Later, GSL resets its
      // damping and goes on, as its driver does. Any other error (a domain error of the law
      // or its Jacobian) leaves no fit, as the driver's status did.
      int status = gsl_multifit_nlinear_iterate(w);
      if (status == GSL_ENOPROG && iteration == 0) break;
      if (status != GSL_SUCCESS && status != GSL_ENOPROG) {
        failed = true;
        break;
      }
      int info = 0;
      if (gsl_multifit_nlinear_test(1e-10, 1e-10, 0.0, &info, w) != GSL_CONTINUE) break;
      double now = sum_of_squares();
      stalled = last - now <= kStalled * last ? stalled + 1 : 0;
      if (stalled >= kStalledSteps) break;
      last = now;
    }
    double sum = sum_of_squares();
    gsl_vector* x = gsl_multifit_nlinear_position(w);
    bool finite = !failed && std::isfinite(sum);
    for (size_t i = 0; i < p; ++i) finite &= std::isfinite(gsl_vector_get(x, i));
    if (finite) {
      cost = sum;
      best->assign(p, 0);
      for (size_t i = 0; i < p; ++i) (*best)[i] = gsl_vector_get(x, i);
    }
  }
  gsl_vector_free(x0);
  gsl_multifit_nlinear_free(w);
  return cost;
}

size_t DistinctX(const std::vector<FitPoint>& points) {
  std::set<double> xs;
  for (const FitPoint& p : points) xs.insert(p.x);
  return xs.size();
}

}  // namespace

double PowerLaw::Eval(double x) const { return a * std::pow(x + d, -b) + c; }

Expected<PowerLaw> FitPowerLaw(const std::vector<FitPoint>& points,
                               const std::optional<PowerLaw>& start) {
  static const bool quiet = [] {
    gsl_set_error_handler_off();  // errors come back as status codes, never as an abort
    return true;
  }();
  (void)quiet;
  size_t distinct = DistinctX(points);
  if (distinct < static_cast<size_t>(kPowerLawParameters)) {
    return FailedPrecondition(
        fmt::format("{} point{} for {} parameters: a curve needs at least {} distinct x", distinct,
                    distinct == 1 ? "" : "s", kPowerLawParameters, kPowerLawParameters));
  }
  Data data;
  double log_sum = 0, min_u = std::numeric_limits<double>::max(), min_error = 1, mean_error = 0;
  for (const FitPoint& p : points) {
    if (!(p.x > 0) || !(p.error > 0) || !(p.error < 1)) {
      return InvalidArgument(
          fmt::format("a fit point needs x > 0 and an error in (0, 1), got "
                      "x {} and error {}",
                      p.x, p.error));
    }
    log_sum += std::log(p.x);
  }
  const double scale = std::exp(log_sum / static_cast<double>(points.size()));
  for (const FitPoint& p : points) {
    data.u.push_back(p.x / scale);
    data.error.push_back(p.error);
    min_u = std::min(min_u, p.x / scale);
    min_error = std::min(min_error, p.error);
    mean_error += p.error / static_cast<double>(points.size());
  }
  std::optional<double> best_cost;
  std::vector<double> best;
  if (start && start->a > 0 && start->b > 0 && start->c > 0 && start->d > 0) {
    // The law in x / scale: a (x + d)^-b = a scale^-b (u + d / scale)^-b.
    best_cost = Solve(data,
                      {std::log(start->a * std::pow(scale, -start->b)), std::log(start->b),
                       std::log(start->c), std::log(start->d / scale)},
                      &best);
  }
  // Several starts: the power law's valleys are long and flat, and one start can stall in one.
  const bool warm = best_cost.has_value();
  for (double b0 : {0.1, 0.3, 1.0}) {
    if (warm) break;
    for (double d0 : {0.01 * min_u, min_u}) {
      for (double floor : {0.5, 0.9}) {
        double c0 = std::max(1e-4, floor * min_error);
        double a0 = std::max(1e-4, (mean_error - c0) * std::pow(1.0 + d0, b0));
        std::vector<double> found;
        std::optional<double> cost =
            Solve(data, {std::log(a0), std::log(b0), std::log(c0), std::log(d0)}, &found);
        if (cost && (!best_cost || *cost < *best_cost)) {
          best_cost = cost;
          best = found;
        }
      }
    }
  }
  if (!best_cost) return Internal("the power-law fit did not converge from any start");
  PowerLaw law;
  law.b = std::exp(best[1]);
  law.a = std::exp(best[0]) * std::pow(scale, law.b);
  law.c = std::exp(best[2]);
  law.d = std::exp(best[3]) * scale;
  return law;
}

std::vector<size_t> ParetoFrontier(const std::vector<FitPoint>& points) {
  std::vector<size_t> order(points.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto before = [&](size_t a, size_t b) {
    return points[a].x != points[b].x ? points[a].x < points[b].x
                                      : points[a].error < points[b].error;
  };
  // FitWithBand's draws come sorted: then a pass checks it instead of a sort.
  if (!std::is_sorted(order.begin(), order.end(), before)) {
    std::stable_sort(order.begin(), order.end(), before);
  }
  std::vector<size_t> frontier;
  double best = std::numeric_limits<double>::infinity();
  for (size_t i : order) {
    if (points[i].error < best) {
      frontier.push_back(i);
      best = points[i].error;
    }
  }
  return frontier;
}

CurveFit FitWithBand(
    const std::vector<FitPoint>& points,
    const std::function<std::vector<FitPoint>(const std::vector<FitPoint>&)>& select, int resamples,
    uint64_t seed) {
  auto chosen = [&](const std::vector<FitPoint>& all) { return select ? select(all) : all; };
  // Sorted once, so that each draw is built in order from its counts (no sort per draw) and
  // `select` is handed sorted points.
  std::vector<FitPoint> sorted = points;
  std::stable_sort(sorted.begin(), sorted.end(), [](const FitPoint& a, const FitPoint& b) {
    return a.x != b.x ? a.x < b.x : a.error < b.error;
  });
  CurveFit fit;
  std::vector<FitPoint> used = chosen(sorted);
  fit.points = static_cast<int>(used.size());
  Expected<PowerLaw> law = FitPowerLaw(used);
  if (!law.ok()) {
    fit.status =
        law.status().code() == StatusCode::kFailedPrecondition ? "too_few_points" : "failed";
    fit.message = law.status().message();
    return fit;
  }
  fit.status = "ok";
  fit.law = *law;
  double sum = 0, lo = std::numeric_limits<double>::max(), hi = 0;
  for (const FitPoint& p : used) {
    sum += std::pow(law->Eval(p.x) - p.error, 2);
    lo = std::min(lo, p.x);
    hi = std::max(hi, p.x);
  }
  fit.rmse = std::sqrt(sum / static_cast<double>(used.size()));
  fit.extrapolated_from = hi;
  // Log-spaced over the data, then over the decade beyond it: the largest x is a grid point,
  // where a drawing switches from fitted to extrapolated.
  constexpr int kOverData = 30, kBeyond = 10;
  std::vector<double> grid;
  for (int i = 0; i <= kOverData; ++i) {
    grid.push_back(i == kOverData ? hi
                                  : lo * std::pow(hi / lo, static_cast<double>(i) / kOverData));
  }
  for (int i = 1; i <= kBeyond; ++i)
    grid.push_back(hi * std::pow(10.0, static_cast<double>(i) / kBeyond));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, points.size() - 1);
  std::vector<std::vector<double>> draws(grid.size());
  fit.resamples = resamples;
  // A fit is a function of the points it is given (every draw starts from the full fit), and
  // draws often select the same points (a family's frontier, the means of many seeds): each
  // set is fitted once and counts as often as it was drawn.
  std::map<std::vector<std::pair<double, double>>, std::optional<PowerLaw>> fitted;
  std::vector<int> counts(sorted.size());
  std::vector<FitPoint> sample;
  sample.reserve(sorted.size());
  for (int r = 0; r < resamples; ++r) {
    std::fill(counts.begin(), counts.end(), 0);
    for (size_t i = 0; i < sorted.size(); ++i) ++counts[pick(rng)];
    sample.clear();
    for (size_t i = 0; i < sorted.size(); ++i) sample.insert(sample.end(), counts[i], sorted[i]);
    std::vector<FitPoint> selected = chosen(sample);
    std::vector<std::pair<double, double>> key;
    key.reserve(selected.size());
    for (const FitPoint& p : selected) key.emplace_back(p.x, p.error);
    auto [it, fresh] = fitted.try_emplace(std::move(key));
    if (fresh) {
      Expected<PowerLaw> again = FitPowerLaw(selected, *law);
      if (again.ok()) it->second = *again;
    }
    if (!it->second) continue;
    ++fit.resamples_fitted;
    for (size_t g = 0; g < grid.size(); ++g) draws[g].push_back(it->second->Eval(grid[g]));
  }
  // Fewer than 20 fitted draws make a 95% band meaningless: then the curve has none.
  bool band = fit.resamples_fitted >= 20;
  for (size_t g = 0; g < grid.size(); ++g) {
    BandPoint point{grid[g], law->Eval(grid[g]), std::nullopt, std::nullopt};
    if (band) {
      std::vector<double>& v = draws[g];
      std::sort(v.begin(), v.end());
      auto at = [&](double q) {
        return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
      };
      point.low = at(0.025);
      point.high = at(0.975);
    }
    fit.curve.push_back(point);
  }
  if (!band) {
    fit.message = fmt::format("no confidence band: only {} of {} resamples could be fitted",
                              fit.resamples_fitted, fit.resamples);
  }
  return fit;
}

nlohmann::json ToJson(const CurveFit& fit) {
  using nlohmann::json;
  json out = {{"status", fit.status}, {"message", fit.message}, {"points", fit.points}};
  if (fit.status != "ok") return out;
  out["params"] = {{"a", fit.law.a}, {"b", fit.law.b}, {"c", fit.law.c}, {"d", fit.law.d}};
  out["rmse"] = fit.rmse;
  out["extrapolated_from"] = fit.extrapolated_from;
  out["resamples"] = fit.resamples;
  out["resamples_fitted"] = fit.resamples_fitted;
  json curve = json::array();
  for (const BandPoint& p : fit.curve) {
    curve.push_back({{"x", p.x},
                     {"error", p.fit},
                     {"low", p.low ? json(*p.low) : json(nullptr)},
                     {"high", p.high ? json(*p.high) : json(nullptr)}});
  }
  out["curve"] = curve;
  return out;
}

}  // namespace vitscale::planning
