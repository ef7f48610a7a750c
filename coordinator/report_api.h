// Report ingestion (docs/api.md, "Reports"): what a running attempt's trainer reports — metric
// batches, results with the compute ledger, checkpoints, the phase it is in — each accepted only
// with that attempt's report token while it runs; and the leader agent's exit batch, which ends
// its attempts.
//
// Threading: io thread only.
#pragma once

#include <map>
#include <string>
#include <utility>

#include "coordinator/core.h"

namespace vitscale::coordinator {

class ReportApi {
 public:
  // REQUIRES: `core` outlives the ReportApi.
  explicit ReportApi(Core& core);

  void AddRoutes(Router& router);

 private:
  HttpResponse PostMetrics(const HttpRequest& request);
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
};

}  // namespace vitscale::coordinator
