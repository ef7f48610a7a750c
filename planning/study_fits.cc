#include "planning/study_fits.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

namespace vitscale::planning {
namespace {

constexpr const char* kAverage = "average";
const std::vector<std::string> kFamilyOrder = {"ResNet", "ViT", "hybrid"};

int FamilyRank(const std::string& family) {
  auto it = std::find(kFamilyOrder.begin(), kFamilyOrder.end(), family);
  return static_cast<int>(it - kFamilyOrder.begin());
}

std::string Number(double value) { return fmt::format("{:.4g}", value); }

}  // namespace

Expected<StudyFits> FitStudy(const storage::ResultsTable& table, const std::string& column) {
  StudyFits fits;
  fits.sweep = table.sweep;
  fits.column = column.empty() ? kAverage : column;
  int index = -1;
  if (fits.column != kAverage) {
    std::string known;
    for (size_t i = 0; i < table.columns.size(); ++i) {
      if (table.columns[i].Title() == fits.column) index = static_cast<int>(i);
      known += (known.empty() ? "" : ", ") + table.columns[i].Title();
    }
    if (index < 0) {
      return InvalidArgument(fmt::format("sweep {} has no result column '{}'; use average{}{}",
                                         table.sweep, fits.column, known.empty() ? "" : " or ",
                                         known));
    }
  }
  // Finished rows with a value, grouped by family (compute) and by model and epochs (data).
  std::map<std::string, GroupFit> by_family;
  std::map<std::string, std::vector<const storage::ResultsTableRow*>> by_model;
  std::map<std::string, std::set<double>> epochs_of_model;
  auto value_of = [&](const storage::ResultsTableRow& row) -> std::optional<double> {
    if (index < 0) return row.average;
    return row.transfer[static_cast<size_t>(index)];
  };
  for (const storage::ResultsTableRow& row : table.rows) {
    std::optional<double> percent = value_of(row);
    if (row.compute_planned || !percent || !(row.exaflops > 0)) continue;
    double error = 1.0 - *percent / 100.0;
    if (!(error > 0 && error < 1)) continue;  // a perfect or a zero score cannot be on the curve
    const std::string& family = row.family;
    GroupFit& group = by_family[family];
    group.group = family;
    group.family = family;
    group.points.push_back({row.job_id, row.model, {row.exaflops, error}, 1});
    epochs_of_model[row.model].insert(row.epochs);
    by_model[row.model].push_back(&row);
  }
  auto frontier_of = [](const std::vector<FitPoint>& points) {
    std::vector<FitPoint> kept;
    for (size_t i : ParetoFrontier(points)) kept.push_back(points[i]);
    return kept;
  };
  for (auto& [family, group] : by_family) {
    std::vector<FitPoint> points;
    for (const FitPointOf& p : group.points) points.push_back(p.point);
    group.frontier = ParetoFrontier(points);
    group.fit = FitWithBand(points, frontier_of);
    fits.compute.push_back(std::move(group));
  }
  std::sort(fits.compute.begin(), fits.compute.end(), [](const GroupFit& a, const GroupFit& b) {
    return FamilyRank(a.family) != FamilyRank(b.family)
               ? FamilyRank(a.family) < FamilyRank(b.family)
               : a.group < b.group;
  });

  // Fig. 4: seeds of one model, epochs and size are one point, their mean. The bootstrap draws
  // jobs, so each draw averages the seeds it drew.
  for (const auto& [model, rows] : by_model) {
    bool several_epochs = epochs_of_model[model].size() > 1;
    std::map<double, std::vector<const storage::ResultsTableRow*>> by_epochs;
    for (const storage::ResultsTableRow* row : rows) by_epochs[row->epochs].push_back(row);
    for (const auto& [epochs, list] : by_epochs) {
      GroupFit group;
      group.group = several_epochs ? fmt::format("{} ({} ep)", model, epochs) : model;
      group.family = list.front()->family;
      std::vector<FitPoint> jobs_points;
      std::map<int64_t, std::vector<double>> by_size;
      for (const storage::ResultsTableRow* row : list) {
        double error = 1.0 - *value_of(*row) / 100.0;
        jobs_points.push_back({static_cast<double>(row->examples), error});
        by_size[row->examples].push_back(error);
      }
      for (const auto& [size, errors] : by_size) {
        double mean = 0;
        for (double e : errors) mean += e / static_cast<double>(errors.size());
        group.points.push_back(
            {"", model, {static_cast<double>(size), mean}, static_cast<int>(errors.size())});
        group.frontier.push_back(group.points.size() - 1);
      }
      // FitWithBand hands the points sorted by x: each x's run is averaged in one pass.
      auto mean_per_x = [](const std::vector<FitPoint>& points) {
        std::vector<FitPoint> means;
        for (size_t i = 0; i < points.size();) {
          size_t end = i;
          double sum = 0;
          for (; end < points.size() && points[end].x == points[i].x; ++end) {
            sum += points[end].error;
          }
          means.push_back({points[i].x, sum / static_cast<double>(end - i)});
          i = end;
        }
        return means;
      };
      group.fit = FitWithBand(jobs_points, mean_per_x);
      fits.data_size.push_back(std::move(group));
    }
  }
  std::sort(fits.data_size.begin(), fits.data_size.end(), [](const GroupFit& a, const GroupFit& b) {
    return FamilyRank(a.family) != FamilyRank(b.family)
               ? FamilyRank(a.family) < FamilyRank(b.family)
               : a.group < b.group;
  });
  return fits;
}

Expected<StudyFits> FitStudy(storage::Store& store, const std::string& sweep,
                             const std::string& column) {
  ASSIGN_OR_RETURN(storage::ResultsTable table, storage::BuildResultsTable(store, sweep));
  return FitStudy(table, column);
}

nlohmann::json ToJson(const StudyFits& fits) {
  using nlohmann::json;
  auto groups = [](const std::vector<GroupFit>& list, const char* x_name) {
    json out = json::array();
    for (const GroupFit& g : list) {
      // Only the points fitted: every job of the group is in the study view already, and for
      // a large sweep they made the answer megabytes that the page never drew.
      json points = json::array(), fitted = json::array();
      for (size_t i : g.frontier) {
        const FitPointOf& p = g.points[i];
        json point = {
            {"model", p.model}, {x_name, p.point.x}, {"error", p.point.error}, {"runs", p.runs}};
        if (!p.job.empty()) point["job"] = p.job;
        fitted.push_back(points.size());
        points.push_back(point);
      }
      int jobs = 0;
      for (const FitPointOf& p : g.points) jobs += p.runs;
      out.push_back({{"group", g.group},
                     {"family", g.family},
                     {"jobs", jobs},
                     {"points", points},
                     {"fitted", fitted},
                     {"fit", ToJson(g.fit)}});
    }
    return out;
  };
  return {{"sweep", fits.sweep},
          {"column", fits.column},
          {"law", "error = a * (x + d)^(-b) + c"},
          {"parameters", kPowerLawParameters},
          {"compute", groups(fits.compute, "exaflops")},
          {"data_size", groups(fits.data_size, "examples")}};
}

std::string FormatFits(const StudyFits& fits, storage::TableFormat format) {
  std::vector<std::string> header = {"figure",   "group", "points", "a",        "b",
                                     "c",        "d",     "RMSE",   "x at 10x", "error at 10x",
                                     "95% band", "note"};
  std::vector<std::vector<std::string>> rows;
  auto add = [&](const std::vector<GroupFit>& list, const std::string& figure) {
    for (const GroupFit& g : list) {
      const CurveFit& f = g.fit;
      std::vector<std::string> row = {figure, g.group, std::to_string(f.points)};
      if (f.status == "ok") {
        const BandPoint& last = f.curve.back();
        row.insert(row.end(),
                   {Number(f.law.a), Number(f.law.b), Number(f.law.c), Number(f.law.d),
                    Number(f.rmse), Number(last.x), Number(last.fit),
                    last.low ? fmt::format("{}-{}", Number(*last.low), Number(*last.high)) : "",
                    f.message});
      } else {
        row.insert(row.end(), {"", "", "", "", "", "", "", "", f.message});
      }
      rows.push_back(std::move(row));
    }
  };
  add(fits.compute, "error vs exaFLOPs (" + fits.column + ")");
  add(fits.data_size, "error vs examples (" + fits.column + ")");
  std::vector<bool> text(header.size(), false);
  text[0] = text[1] = text[10] = text[11] = true;
  return storage::FormatTable(header, rows, text, format);
}

}  // namespace vitscale::planning
