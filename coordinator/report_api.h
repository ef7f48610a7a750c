// Report ingestion (docs/api.md, "Reports"): what a running attempt's trainer reports — metric
// batches, results with the compute ledger, checkpoints, the phase it is in — each accepted only
// with that attempt's report token while it runs; and the leader agent's exit batch, which ends
// its attempts.
//
// Metric batches that arrive together share one commit: a post joins the pending group and one
// flush, posted to the io_context, writes the whole group in one transaction (one fsync) and only
// then answers each post (docs/api.md, "Reports").
//
// Threading: io thread only.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/core.h"

namespace vitscale::coordinator {

class ReportApi {
 public:
  // REQUIRES: `core` outlives the ReportApi.
  explicit ReportApi(Core& core);

  void AddRoutes(Router& router);
  // Writes and answers the metric posts still waiting for their commit (the coordinator stops).
  void Stop();

 private:
  // A decoded metric post waiting for its group's commit; answered only after it.
  struct PendingMetrics {
    std::string job_id;
    int attempt = 0;
    std::vector<storage::MetricPoint> points;
    Respond respond;
  };
  // Decodes the batch and adds it to the pending group (answers a malformed one at once).
  void PostMetrics(const HttpRequest& request, Respond respond);
  // Writes the pending group in one transaction, then answers each of its posts: a post that is
  // invalid on its own (unknown attempt, bad points) gets its own refusal and the rest are
  // stored; a failure of the database (locked, disk full, read-only) refuses every post of the
  // group and stores none of them.
  void FlushMetrics();
  HttpResponse PostResults(const HttpRequest& request);
  HttpResponse PostCheckpoint(const HttpRequest& request);
  HttpResponse PostPhase(const HttpRequest& request);
  // The leader agent's exit batch (docs/api.md, "Agents").
  HttpResponse PostExits(const HttpRequest& request);
  // An attempt that exited 79 (out of memory): kOutOfMemory when the trainer recorded a smaller
  // batch than at its last such exit (the next attempt runs with half of it, and no retry is
  // used), else kFailed; `note` says which, for the job's events. `seen_now` gets the sizes
  // to remember once the exit is committed (left as it is for kFailed).
  ExitKind OutOfMemoryExit(const std::string& job_id, int attempt, std::string* note,
                           std::pair<int64_t, int64_t>* seen_now);

  Core& core_;
  // Per job, the sizes out_of_memory.json held at its last out-of-memory exit (micro-batch,
  // evaluation batch): an exit 79 that leaves them as they were would run out again, blindly.
  std::map<std::string, std::pair<int64_t, int64_t>> memory_limits_seen_;
  std::vector<PendingMetrics> metric_group_;
  size_t metric_group_points_ = 0;
  bool metric_flush_posted_ = false;
  // The posted flush holds a weak copy: once the ReportApi is gone it does nothing.
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

}  // namespace vitscale::coordinator
