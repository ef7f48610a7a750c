#include "protocol/enums.h"

#include <fmt/format.h>

#include <array>
#include <utility>

#include "common/text.h"

namespace vitscale::protocol {
namespace {

template <typename Enum, size_t N>
using Spellings = std::array<std::pair<Enum, const char*>, N>;

template <typename Enum, size_t N>
Expected<Enum> ParseName(std::string_view name, const Spellings<Enum, N>& names, const char* what) {
  std::string valid;
  for (const auto& [value, spelling] : names) {
    if (name == spelling) return value;
    valid += valid.empty() ? "" : ", ";
    valid += spelling;
  }
  return InvalidArgument(fmt::format("unknown {} '{}'; use one of: {}", what, Printable(name), valid));
}

template <typename Enum, size_t N>
const char* NameOf(Enum value, const Spellings<Enum, N>& names) {
  for (const auto& [candidate, spelling] : names) {
    if (candidate == value) return spelling;
  }
  return "unknown";
}

constexpr Spellings<JobState, 7> kJobStates = {{
    {JobState::kPending, "pending"},
    {JobState::kLeased, "leased"},
    {JobState::kRunning, "running"},
    {JobState::kSucceeded, "succeeded"},
    {JobState::kFailed, "failed"},
    {JobState::kCancelled, "cancelled"},
    {JobState::kPreempted, "preempted"},
}};

constexpr Spellings<AttemptOutcome, 5> kAttemptOutcomes = {{
    {AttemptOutcome::kSucceeded, "succeeded"},
    {AttemptOutcome::kFailed, "failed"},
    {AttemptOutcome::kCancelled, "cancelled"},
    {AttemptOutcome::kPreempted, "preempted"},
    {AttemptOutcome::kLost, "lost"},
}};

constexpr Spellings<ExitOutcome, 6> kExitOutcomes = {{
    {ExitOutcome::kSucceeded, "succeeded"},
    {ExitOutcome::kFailed, "failed"},
    {ExitOutcome::kConfigError, "config_error"},
    {ExitOutcome::kPreempted, "preempted"},
    {ExitOutcome::kKilled, "killed"},
    {ExitOutcome::kUnreachable, "unreachable"},
}};

constexpr Spellings<SignalAction, 2> kSignalActions = {{
    {SignalAction::kPreempt, "preempt"},
    {SignalAction::kKill, "kill"},
}};

constexpr Spellings<Evaluation, 3> kEvaluations = {{
    {Evaluation::kPretrain, "pretrain"},
    {Evaluation::kFewShot, "few_shot"},
    {Evaluation::kFineTune, "fine_tune"},
}};

constexpr Spellings<JobPhase, 4> kJobPhases = {{
    {JobPhase::kPretraining, "pretraining"},
    {JobPhase::kFewShot, "few-shot"},
    {JobPhase::kFineTune, "fine-tune"},
    {JobPhase::kInspection, "inspection"},
}};

}  // namespace

const char* JobStateName(JobState state) { return NameOf(state, kJobStates); }
Expected<JobState> ParseJobState(std::string_view name) {
  return ParseName(name, kJobStates, "job state");
}
constexpr Spellings<ExitResult, 3> kExitResults = {{
    {ExitResult::kRecorded, "recorded"},
    {ExitResult::kEnded, "ended"},
    {ExitResult::kRefused, "refused"},
}};

bool IsFinalStateName(std::string_view name) {
  Expected<JobState> state = ParseJobState(name);
  return state.ok() && IsFinal(*state);
}

const char* AttemptOutcomeName(AttemptOutcome outcome) { return NameOf(outcome, kAttemptOutcomes); }
Expected<AttemptOutcome> ParseAttemptOutcome(std::string_view name) {
  return ParseName(name, kAttemptOutcomes, "attempt outcome");
}

const char* ExitOutcomeName(ExitOutcome outcome) { return NameOf(outcome, kExitOutcomes); }
Expected<ExitOutcome> ParseExitOutcome(std::string_view name) {
  return ParseName(name, kExitOutcomes, "exit outcome");
}

const char* ExitResultName(ExitResult result) { return NameOf(result, kExitResults); }
Expected<ExitResult> ParseExitResult(std::string_view name) {
  return ParseName(name, kExitResults, "exit result");
}

const char* SignalActionName(SignalAction action) { return NameOf(action, kSignalActions); }
Expected<SignalAction> ParseSignalAction(std::string_view name) {
  return ParseName(name, kSignalActions, "signal action");
}

const char* EvaluationName(Evaluation evaluation) { return NameOf(evaluation, kEvaluations); }
Expected<Evaluation> ParseEvaluation(std::string_view name) {
  return ParseName(name, kEvaluations, "evaluation");
}

const char* JobPhaseName(JobPhase phase) { return NameOf(phase, kJobPhases); }
Expected<JobPhase> ParseJobPhase(std::string_view name) {
  return ParseName(name, kJobPhases, "job phase");
}

}  // namespace vitscale::protocol
