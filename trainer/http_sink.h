// HttpSink: rank 0's reports sent to the coordinator (docs/api.md, "Reports"): metric batches,
// results with the compute ledger, each checkpoint written, and each phase entered. Training never
// waits for the network: every call queues and returns, and a background thread delivers in order,
// retrying with backoff while the coordinator is away (restarting, say). Flush() waits for delivery
// at the end of a job, so results are never reported as done while they still sit in memory.
//
// Threads: the Metrics/Final/Checkpoint/EnterPhase calls and Flush() come from the training thread;
// one internal thread does the HTTP.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "trainer/report.h"

namespace vitscale::trainer {

class HttpSink final : public ReportSink {
 public:
  // `url` is the coordinator's base URL; reports go to /api/v1/jobs/{job_id}/attempts/{attempt}/.
  static Expected<std::unique_ptr<HttpSink>> Create(const std::string& url, const std::string& token,
                                                    const std::string& job_id, int64_t attempt);
  ~HttpSink() override;

  Status Metrics(const std::vector<MetricPoint>& points) override;
  Status Final(const std::vector<ResultRecord>& results, const ComputeLedger& ledger) override;
  Status Checkpoint(int64_t step, const std::string& path, const std::string& sha256) override;
  Status EnterPhase(const Phase& phase) override;
  // Waits until everything queued has been delivered; kUnavailable if `timeout` passes first.
  Status Flush(std::chrono::seconds timeout);

 private:
  struct Post {
    std::string what;  // "metrics", "results", "checkpoints" or "phase"
    nlohmann::json body;
  };

  HttpSink(std::unique_ptr<HttpClient> client, std::string prefix);
  void Enqueue(Post post);
  void DeliverLoop();

  std::unique_ptr<HttpClient> client_;
  std::string prefix_;  // /api/v1/jobs/{id}/attempts/{n}/
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Post> queue_;  // guarded by mutex_
  bool sending_ = false;    // a post taken off the queue is in flight
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace vitscale::trainer
