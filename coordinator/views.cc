#include "coordinator/views.h"

#include <algorithm>
#include <map>
#include <tuple>

namespace vitscale::coordinator {

using storage::JobRecord;

protocol::JobSummary SummaryOf(const JobRecord& job) {
  double planned_images = job.epochs * static_cast<double>(job.subset_size);
  double seen = job.images_seen.value_or(0);
  if (job.state == JobState::kSucceeded) seen = std::max(seen, planned_images);
  protocol::JobSummary s;
  s.id = job.id;
  s.model = job.model;
  s.family = job.family;
  s.dataset = job.dataset;
  s.subset_size = job.subset_size;
  s.epochs = job.epochs;
  s.state = job.state;
  s.priority = job.priority;
  s.ranks = job.ranks;
  s.attempts = job.attempts;
  s.planned_exaflops = job.planned_train_flops / 1e18;
  s.images_seen = seen;
  s.progress = planned_images > 0 ? std::clamp(seen / planned_images, 0.0, 1.0) : 0.0;
  // A phase belongs to a running attempt; a job that left "running" (preempted, say) keeps none.
  if (job.phase && job.state == JobState::kRunning) {
    s.phase = protocol::PhaseReport{job.phase->phase, job.phase->index, job.phase->count,
                                    job.phase->detail};
  }
  s.created_at = IsoTime(job.submitted_at);
  s.updated_at = IsoTime(job.updated_at);
  return s;
}

Expected<protocol::JobDetail> DetailOf(storage::Store& store, const JobRecord& job) {
  protocol::JobDetail d;
  d.summary = SummaryOf(job);
  d.config = protocol::Json::parse(job.config_json, nullptr, /*allow_exceptions=*/false);
  ASSIGN_OR_RETURN(d.sweeps, store.JobSweeps(job.id));
  ASSIGN_OR_RETURN(std::vector<storage::AttemptRecord> attempts, store.ListAttempts(job.id));
  for (const storage::AttemptRecord& a : attempts) {
    protocol::AttemptView view;
    view.number = a.number;
    view.agent = a.agent_id;
    view.hosts = a.hosts;
    view.started_at = IsoTime(a.started_at);
    if (a.ended_at) view.ended_at = IsoTime(*a.ended_at);
    view.outcome = a.outcome;
    view.exit_status = a.exit_status;
    view.resumed_from_step = a.resumed_from_step;
    d.attempts.push_back(std::move(view));
  }
  ASSIGN_OR_RETURN(std::vector<storage::CheckpointRecord> checkpoints,
                   store.ListCheckpoints(job.id));
  for (const storage::CheckpointRecord& c : checkpoints) {
    d.checkpoints.push_back({c.step, c.path, c.sha256, IsoTime(c.created_at)});
  }
  ASSIGN_OR_RETURN(std::vector<storage::ResultRecord> results, store.ListResults(job.id));
  for (const storage::ResultRecord& r : results) {
    d.results.push_back({r.evaluation, r.dataset, r.shots, r.seed, r.metric, r.value});
  }
  ASSIGN_OR_RETURN(std::vector<storage::LedgerEntry> ledger, store.ListLedger(job.id));
  for (const storage::LedgerEntry& entry : ledger) {
    d.ledger.train_flops += entry.train_flops;
    d.ledger.eval_flops += entry.eval_flops;
    d.ledger.wall_seconds += entry.wall_seconds;
    d.ledger.images_seen += entry.images_seen;
    d.ledger.device_seconds[entry.device_kind] += entry.device_seconds;
  }
  return d;
}

namespace {

// Sums toward one mean: runs, x (a compute axis) and accuracy.
struct Mean {
  int64_t runs = 0;
  double x = 0;
  double accuracy = 0;
  protocol::Json ToJson(bool with_x) const {
    protocol::Json json = {{"runs", runs}, {"accuracy", accuracy / static_cast<double>(runs)}};
    if (with_x) json["x"] = x / static_cast<double>(runs);
    return json;
  }
};

// A point's sums for one accuracy column: Fig. 4's (every finished job with a value) and
// Fig. 5's per axis (those of them with compute on it).
struct ColumnSums {
  Mean all, exaflops, device_hours;
};

}  // namespace

protocol::Json StudySummaryOf(const storage::ResultsTable& table) {
  int64_t not_run = 0;
  // Points in the table's order of first appearance, keyed by model, epochs and subset size.
  using Key = std::tuple<std::string, double, int64_t>;
  std::map<Key, size_t> point_of;
  struct Point {
    const storage::ResultsTableRow* first;
    std::vector<ColumnSums> columns;  // table.columns, then the average
  };
  std::vector<Point> points;
  size_t width = table.columns.size() + 1;
  for (const storage::ResultsTableRow& row : table.rows) {
    if (row.compute_planned) {
      ++not_run;
      continue;
    }
    auto [it, added] = point_of.emplace(Key{row.model, row.epochs, row.examples}, points.size());
    if (added) points.push_back({&row, std::vector<ColumnSums>(width)});
    Point& point = points[it->second];
    for (size_t c = 0; c < width; ++c) {
      std::optional<double> value = c < table.columns.size() ? row.transfer[c] : row.average;
      if (!value) continue;
      double accuracy = *value / 100.0;
      ColumnSums& sums = point.columns[c];
      sums.all.runs += 1;
      sums.all.accuracy += accuracy;
      if (row.exaflops > 0) sums.exaflops = {sums.exaflops.runs + 1, sums.exaflops.x + row.exaflops,
                                             sums.exaflops.accuracy + accuracy};
      if (row.device_hours && *row.device_hours > 0) {
        sums.device_hours = {sums.device_hours.runs + 1,
                             sums.device_hours.x + *row.device_hours,
                             sums.device_hours.accuracy + accuracy};
      }
    }
  }
  protocol::Json json_points = protocol::Json::array();
  for (const Point& point : points) {
    protocol::Json values = protocol::Json::object();
    for (size_t c = 0; c < width; ++c) {
      const ColumnSums& sums = point.columns[c];
      if (sums.all.runs == 0) continue;
      protocol::Json value = sums.all.ToJson(false);
      if (sums.exaflops.runs) value["exaflops"] = sums.exaflops.ToJson(true);
      if (sums.device_hours.runs) value["device_hours"] = sums.device_hours.ToJson(true);
      values[c < table.columns.size() ? table.columns[c].Title() : "average"] = std::move(value);
    }
    if (values.empty()) continue;
    json_points.push_back({{"model", point.first->model},
                           {"family", point.first->family},
                           {"epochs", point.first->epochs},
                           {"subset_size", point.first->examples},
                           {"values", std::move(values)}});
  }
  return {{"sweep", table.sweep},
          {"not_run", not_run},
          {"points", std::move(json_points)}};
}

protocol::SweepView SweepViewOf(const storage::SweepSummary& sweep) {
  protocol::SweepView view;
  view.name = sweep.name;
  view.created_at = IsoTime(sweep.created_at);
  view.jobs = sweep.jobs;
  view.by_state = sweep.jobs_by_state;
  view.planned_exaflops = sweep.planned_train_flops / 1e18;
  view.spent_exaflops = sweep.spent_train_flops / 1e18;
  return view;
}

protocol::AgentInfo AgentInfoOf(const AgentView& agent, const Scheduler& scheduler,
                                const Clock& clock) {
  protocol::AgentInfo info;
  info.id = agent.spec.id;
  info.host = agent.spec.host;
  info.slots = agent.spec.slots;
  info.gpus = agent.spec.gpus;
  info.gpu_kind = agent.spec.gpu_kind;
  info.free_slots = agent.free_slots;
  info.free_gpus = agent.free_gpus;
  double since_heartbeat = std::chrono::duration<double>(clock.Now() - agent.last_heartbeat).count();
  info.last_heartbeat = IsoTime(clock.WallSeconds() - since_heartbeat);
  info.alive = agent.alive;
  info.jobs = scheduler.JobsOnAgent(agent.spec.id);
  return info;
}

}  // namespace vitscale::coordinator
