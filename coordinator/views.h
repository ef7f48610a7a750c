// The API's views of stored records and of the scheduler's state, as protocol messages.
#pragma once

#include "common/clock.h"
#include "coordinator/scheduler.h"
#include "protocol/api.h"
#include "storage/results_table.h"
#include "storage/store.h"

namespace vitscale::coordinator {

// A job's row in lists and "job" events; progress from its newest images_seen metric, and the
// phase its running attempt reported last.
protocol::JobSummary SummaryOf(const storage::JobRecord& job);
// GET /api/v1/jobs/{id}: the row plus attempts, checkpoints, results and the ledger's totals.
Expected<protocol::JobDetail> DetailOf(storage::Store& store, const storage::JobRecord& job);
// GET /api/v1/study/{sweep}'s summary of a whole table (docs/api.md), but for the state
// counts, which the caller reads from the sweep's counters: `not_run`, and the plots' points,
// one per model, epochs and subset size, at the mean of its finished seeds, per accuracy column
// and per compute axis.
protocol::Json StudySummaryOf(const storage::ResultsTable& table);
protocol::SweepView SweepViewOf(const storage::SweepSummary& sweep);
protocol::AgentInfo AgentInfoOf(const AgentView& agent, const Scheduler& scheduler,
                                const Clock& clock);

}  // namespace vitscale::coordinator
