// The domain's enumerations, defined once for every process: the coordinator stores and sends
// them, the agent and the trainer report them, the CLI and the dashboard read them. Each has
// the spelling the API and the database use (Name) and a strict parser whose error lists the
// valid spellings.
#pragma once

#include <string_view>

#include "common/status.h"

namespace vitscale::protocol {

// DESIGN.md "Job life": pending -> leased -> running -> succeeded | failed | cancelled;
// running -> preempted -> pending; failed -> pending while retries remain.
enum class JobState { kPending, kLeased, kRunning, kSucceeded, kFailed, kCancelled, kPreempted };
const char* JobStateName(JobState state);  // "pending", "leased", ...
Expected<JobState> ParseJobState(std::string_view name);
// Succeeded, failed or cancelled: the job will not run again.
inline bool IsFinal(JobState state) {
  return state == JobState::kSucceeded || state == JobState::kFailed ||
         state == JobState::kCancelled;
}
// The same for a state's name (as the API gives it); an unknown name is not final.
bool IsFinalStateName(std::string_view name);

// How an attempt ended, as the coordinator records it. `kLost` = the lease ran out (the worker
// vanished); like kPreempted it never counts as a failure.
enum class AttemptOutcome { kSucceeded, kFailed, kCancelled, kPreempted, kLost };
const char* AttemptOutcomeName(AttemptOutcome outcome);
Expected<AttemptOutcome> ParseAttemptOutcome(std::string_view name);

// How a job's processes ended, as the leader agent reports it (docs/agent.md has the table).
// kUnreachable: a host of the gang could not be reached, so nothing ran (kAgentExitUnreachable).
enum class ExitOutcome { kSucceeded, kFailed, kConfigError, kPreempted, kKilled, kUnreachable };
// "succeeded", ..., "config_error", "killed", "unreachable"
const char* ExitOutcomeName(ExitOutcome outcome);
Expected<ExitOutcome> ParseExitOutcome(std::string_view name);

// What the coordinator did with one exit of an agent's exit batch (docs/api.md, "Agents").
// kRecorded: the attempt ends as reported. kEnded: it had ended already (this exit was
// recorded before and is sent again, or the lease ran out first); nothing changes. kRefused:
// the exit cannot be recorded (its message says why) and sending it again will not help.
enum class ExitResult { kRecorded, kEnded, kRefused };
const char* ExitResultName(ExitResult result);  // "recorded", "ended", "refused"
Expected<ExitResult> ParseExitResult(std::string_view name);

// What a signal entry of a poll reply tells the leader agent to do.
enum class SignalAction { kPreempt, kKill };
const char* SignalActionName(SignalAction action);
Expected<SignalAction> ParseSignalAction(std::string_view name);

enum class Evaluation { kPretrain, kFewShot, kFineTune };
const char* EvaluationName(Evaluation evaluation);  // "pretrain", "few_shot", "fine_tune"
Expected<Evaluation> ParseEvaluation(std::string_view name);

// What a running job is doing (docs/api.md, "Reports"): its phases in the order a job goes
// through them. A job at 100% of its pretraining may have minutes of evaluations ahead.
enum class JobPhase { kPretraining, kFewShot, kFineTune, kInspection };
const char* JobPhaseName(JobPhase phase);  // "pretraining", "few-shot", "fine-tune", "inspection"
Expected<JobPhase> ParseJobPhase(std::string_view name);

// vitscale-train's exit statuses (sysexits.h values where one fits): the agent classifies them
// into an ExitOutcome. The coordinator retries a failure while retries remain, requeues a
// preemption without counting it, and never retries a configuration error.
inline constexpr int kTrainExitSucceeded = 0;
inline constexpr int kTrainExitFailed = 1;
inline constexpr int kTrainExitPreempted = 75;    // EX_TEMPFAIL: checkpointed, run me again
inline constexpr int kTrainExitConfigError = 78;  // EX_CONFIG: the spec is wrong; retrying cannot help
// Out of (GPU or host) memory: the trainer recorded the size that failed in the run directory,
// and a retry (a failure, to the agent) trains or evaluates with half of it. Past sysexits'
// range: none of its means this.
inline constexpr int kTrainExitOutOfMemory = 79;
// Not the trainer's: the agent's launch of a multi-host job exits so when it cannot reach one
// of the gang's other hosts with Open MPI's remote launcher, before mpirun starts anything.
inline constexpr int kAgentExitUnreachable = 68;  // EX_NOHOST

}  // namespace vitscale::protocol
