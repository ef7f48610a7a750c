#include "storage/records.h"

#include <fmt/format.h>

#include <array>
#include <utility>

namespace vitscale::storage {
namespace {

template <typename Enum, size_t N>
Expected<Enum> ParseName(std::string_view name,
                         const std::array<std::pair<Enum, const char*>, N>& names,
                         const char* what) {
  std::string valid;
  for (const auto& [value, spelling] : names) {
    if (name == spelling) return value;
    valid += valid.empty() ? "" : ", ";
    valid += spelling;
  }
  return InvalidArgument(fmt::format("unknown {} '{}'; use one of: {}", what, name, valid));
}

constexpr std::array<std::pair<JobState, const char*>, 7> kJobStates = {{
    {JobState::kPending, "pending"},
    {JobState::kLeased, "leased"},
    {JobState::kRunning, "running"},
    {JobState::kSucceeded, "succeeded"},
    {JobState::kFailed, "failed"},
    {JobState::kCancelled, "cancelled"},
    {JobState::kPreempted, "preempted"},
}};

constexpr std::array<std::pair<AttemptOutcome, const char*>, 5> kOutcomes = {{
    {AttemptOutcome::kSucceeded, "succeeded"},
    {AttemptOutcome::kFailed, "failed"},
    {AttemptOutcome::kCancelled, "cancelled"},
    {AttemptOutcome::kPreempted, "preempted"},
    {AttemptOutcome::kLost, "lost"},
}};

constexpr std::array<std::pair<Evaluation, const char*>, 3> kEvaluations = {{
    {Evaluation::kPretrain, "pretrain"},
    {Evaluation::kFewShot, "few_shot"},
    {Evaluation::kFineTune, "fine_tune"},
}};

constexpr std::array<std::pair<JobSort, const char*>, 6> kJobSorts = {{
    {JobSort::kSubmitted, "submitted"},
    {JobSort::kPriority, "priority"},
    {JobSort::kModel, "model"},
    {JobSort::kSubset, "subset"},
    {JobSort::kState, "state"},
    {JobSort::kUpdated, "updated"},
}};

template <typename Enum, size_t N>
const char* NameOf(Enum value, const std::array<std::pair<Enum, const char*>, N>& names) {
  for (const auto& [candidate, spelling] : names) {
    if (candidate == value) return spelling;
  }
  return "unknown";
}

}  // namespace

const char* JobStateName(JobState state) { return NameOf(state, kJobStates); }
Expected<JobState> ParseJobState(std::string_view name) {
  return ParseName(name, kJobStates, "job state");
}

bool IsFinalStateName(std::string_view name) {
  Expected<JobState> state = ParseJobState(name);
  return state.ok() && IsFinal(*state);
}

Expected<JobSort> ParseJobSort(std::string_view name) {
  return ParseName(name, kJobSorts, "job sort");
}

const char* AttemptOutcomeName(AttemptOutcome outcome) { return NameOf(outcome, kOutcomes); }
Expected<AttemptOutcome> ParseAttemptOutcome(std::string_view name) {
  return ParseName(name, kOutcomes, "attempt outcome");
}

const char* EvaluationName(Evaluation evaluation) { return NameOf(evaluation, kEvaluations); }
Expected<Evaluation> ParseEvaluation(std::string_view name) {
  return ParseName(name, kEvaluations, "evaluation");
}

}  // namespace vitscale::storage
