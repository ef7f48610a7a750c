// How vitscale-train ends, as an exit status: the agent reads it to tell the coordinator whether
// a job succeeded, failed (retried with backoff), was preempted (requeued, not a failure), had
// a configuration error (never retried) or ran out of memory (retried with smaller batches). The values follow sysexits.h where one fits.
#pragma once

namespace vitscale {

inline constexpr int kTrainExitSucceeded = 0;
inline constexpr int kTrainExitFailed = 1;
inline constexpr int kTrainExitPreempted = 75;    // EX_TEMPFAIL: checkpointed, run me again
inline constexpr int kTrainExitConfigError = 78;  // EX_CONFIG: the spec is wrong; retrying cannot help
// Out of (GPU or host) memory: the trainer recorded the size that failed in the run directory,
// and a retry trains (or evaluates) with half of it. Past sysexits' range: none of its means this.
inline constexpr int kTrainExitOutOfMemory = 79;

}  // namespace vitscale
