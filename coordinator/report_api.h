// Report ingestion (docs/api.md, "Reports"): what a running attempt's trainer reports — metric
// batches, results with the compute ledger, checkpoints, the phase it is in — each accepted only
// with that attempt's report token while it runs; and the leader agent's exit report, which ends
// it.
//
// Threading: io thread only.
#pragma once

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
  HttpResponse PostExit(const HttpRequest& request);

  Core& core_;
};

}  // namespace vitscale::coordinator
