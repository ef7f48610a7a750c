// Report ingestion (docs/api.md, "Reports"): what a running attempt's trainer reports — metric
// batches, results with the compute ledger, checkpoints, the phase it is in — each accepted only
// with that attempt's report token while it runs; and the leader agent's exit batch, which ends
// its attempts.
//
// Metric batches are written by one writer thread on its own connection to the database, so
// that their inserts and the commit's fsync never hold up the server's loop (heartbeats, other
// reports). The io thread decodes each post and hands the posts of one turn of its loop to the
// writer together; the writer writes every group handed over while its last commit ran in one
// transaction (one fsync), and only then are the posts answered, on the io thread, with the
// metric events (docs/api.md, "Reports").
//
// Threading: the io thread, except WriteMetrics (the writer thread) and what mutex_ guards.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "coordinator/core.h"

namespace vitscale::coordinator {

class ReportApi {
 public:
  // REQUIRES: `core` outlives the ReportApi.
  explicit ReportApi(Core& core);
  ~ReportApi();

  void AddRoutes(Router& router);
  // Writes and answers the metric posts still waiting for their commit (the coordinator stops);
  // the writer thread has ended when it returns. A later post starts it again.
  void Stop();

  // Metric posts handed in and not yet answered; tests wait for them to be.
  int metric_posts_unanswered() const { return unanswered_; }
  // Transactions the metric writer has committed; tests count them.
  int64_t metric_commits() const { return metric_commits_; }

 private:
  // A decoded metric post waiting for its group's commit; answered only after it.
  struct PendingMetrics {
    std::string job_id;
    int attempt = 0;
    std::vector<storage::MetricPoint> points;
    Respond respond;
    Status stored;  // set by the writer
  };
  // Decodes the batch and adds it to this turn's group (answers a malformed one at once).
  void PostMetrics(const HttpRequest& request, Respond respond);
  // Hands this turn's group to the writer (starting it if it is not running).
  void HandOver();
  // The writer thread: takes every group handed over, writes them in one transaction, and has
  // the io thread answer them; ends once stopping_ is set and nothing is left.
  void WriteMetrics();
  // One transaction for `group` on the writer's connection: a post that is invalid on its own
  // (unknown attempt, bad points) gets its own refusal and the rest are stored; a failure of the
  // database (locked, disk full, read-only) refuses every post of the group and stores none.
  void WriteGroup(std::vector<PendingMetrics>& group);
  // Answers the written posts and appends their events (io thread).
  void AnswerWritten();
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
  // This turn's metric posts (io thread).
  std::vector<PendingMetrics> metric_group_;
  size_t metric_group_points_ = 0;
  bool hand_over_posted_ = false;
  int unanswered_ = 0;
  // The writer's own connection, opened (and after a failure reopened) by the writer thread
  // with the path and options of the coordinator's.
  const std::string metric_store_path_;
  const storage::OpenOptions metric_store_options_;
  std::unique_ptr<storage::Store> metric_store_;
  std::thread writer_;
  std::atomic<int64_t> metric_commits_{0};
  // Between the io thread and the writer.
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::vector<PendingMetrics>> queued_;  // groups handed over, oldest first
  size_t queued_points_ = 0;
  std::vector<PendingMetrics> written_;  // to answer
  bool answer_posted_ = false;
  bool stopping_ = false;
  // The posted hand-over and answers hold a weak copy: once the ReportApi is gone they do
  // nothing.
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

}  // namespace vitscale::coordinator
