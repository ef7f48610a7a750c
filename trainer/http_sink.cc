#include "trainer/http_sink.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

namespace vitscale::trainer {

using nlohmann::json;

namespace {

// Metric points queued beyond this are dropped oldest first (with a warning), so that a
// coordinator that stays away for days cannot exhaust the trainer's memory.
constexpr size_t kMaxQueuedPosts = 100000;

}  // namespace

Expected<std::unique_ptr<HttpSink>> HttpSink::Create(const std::string& url, const std::string& token,
                                                     const std::string& job_id, int64_t attempt) {
  HttpClientOptions options;
  options.base_url = url;
  options.bearer_token = token;
  options.read_timeout = std::chrono::seconds(30);
  ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> client, HttpClient::Create(options));
  std::string prefix = fmt::format("/api/v1/jobs/{}/attempts/{}/", job_id, attempt);
  return std::unique_ptr<HttpSink>(new HttpSink(std::move(client), std::move(prefix)));
}

HttpSink::HttpSink(std::unique_ptr<HttpClient> client, std::string prefix)
    : client_(std::move(client)), prefix_(std::move(prefix)) {
  thread_ = std::thread([this] { DeliverLoop(); });
}

HttpSink::~HttpSink() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  client_->Abort();
  thread_.join();
}

void HttpSink::Enqueue(Post post) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (queue_.size() >= kMaxQueuedPosts) {
      auto metrics = std::find_if(queue_.begin(), queue_.end(),
                                  [](const Post& p) { return p.what == "metrics"; });
      if (metrics != queue_.end()) {
        queue_.erase(metrics);
        std::fprintf(stderr, "vitscale-train: coordinator unreachable; dropped a metric batch\n");
      }
    }
    queue_.push_back(std::move(post));
  }
  changed_.notify_all();
}

Status HttpSink::Metrics(const std::vector<MetricPoint>& points) {
  protocol::MetricBatch batch;
  for (const MetricPoint& p : points) batch.points.push_back({p.step, p.name, p.value, {}});
  Enqueue({"metrics", batch.ToJson()});
  return Status::Ok();
}

Status HttpSink::Final(const std::vector<ResultRecord>& results, const ComputeLedger& ledger) {
  protocol::ResultsReport report;
  for (const ResultRecord& r : results) {
    // The coordinator averages few-shot seeds itself; the trainer's mean record (seed -1) would
    // count twice.
    Expected<protocol::ResultEntry> entry = ToProtocol(r);
    if (entry.ok()) {
      report.results.push_back(*entry);
    } else if (entry.status().code() != StatusCode::kNotFound) {
      return entry.status();
    }
  }
  report.ledger = ToProtocol(ledger);
  // One post: the coordinator stores the results and the ledger in one transaction.
  Enqueue({"results", report.ToJson()});
  return Status::Ok();
}

Status HttpSink::Checkpoint(int64_t step, const std::string& path, const std::string& sha256) {
  Enqueue({"checkpoints", protocol::CheckpointReport{step, path, sha256}.ToJson()});
  return Status::Ok();
}

Status HttpSink::EnterPhase(const Phase& phase) {
  ASSIGN_OR_RETURN(protocol::PhaseReport report, ToProtocol(phase));
  Enqueue({"phase", report.ToJson()});
  return Status::Ok();
}

Status HttpSink::Flush(std::chrono::seconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  bool done = changed_.wait_for(lock, timeout, [this] { return queue_.empty() && !sending_; });
  if (done) return Status::Ok();
  return Unavailable(fmt::format("{} reports still undelivered to {} after {} s", queue_.size(),
                                 client_->base_url(), timeout.count()));
}

void HttpSink::DeliverLoop() {
  auto backoff = std::chrono::milliseconds(100);
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    changed_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    Post post = queue_.front();
    sending_ = true;
    lock.unlock();
    Expected<HttpReply> reply = client_->PostJson(prefix_ + post.what, protocol::Dump(post.body));
    lock.lock();
    sending_ = false;
    bool retry = !reply.ok() || reply->status >= 500;
    if (retry) {
      // The coordinator is away or restarting: keep the post and try again after a pause.
      changed_.wait_for(lock, backoff, [this] { return stopping_; });
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      continue;
    }
    backoff = std::chrono::milliseconds(100);
    if (reply->status >= 400) {
      // Retrying a rejected report cannot make it acceptable; say so and go on.
      std::fprintf(stderr, "vitscale-train: coordinator refused %s report (%d): %s\n",
                   post.what.c_str(), reply->status, HttpErrorMessage(*reply).c_str());
    }
    queue_.pop_front();
    changed_.notify_all();
  }
}

}  // namespace vitscale::trainer
