// The coordinator's service: the API handlers over the store and the scheduler, the scheduler's
// timer, the agents' long polls, and the event stream. main.cc wires it to the HTTP server.
//
// The store is the truth: every scheduler transition is written (with the state it expects to
// move from) before the commands that follow it go out, and at start Restore() rebuilds the
// scheduler from the store, so the coordinator can be killed at any moment and started again
// without losing or duplicating a job.
//
// Threading: everything runs on the io_context's single thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "coordinator/clock.h"
#include "coordinator/event_log.h"
#include "coordinator/http_server.h"
#include "coordinator/scheduler.h"
#include "storage/store.h"

namespace vitscale::coordinator {

struct CoordinatorOptions {
  // Where jobs keep checkpoints and outputs: runs_dir/<job id>/. Every agent must see this path
  // (one machine, or a shared filesystem across hosts).
  std::string runs_dir;
  // The URL and token the trainer reports to (its HTTP sink).
  std::string public_url;
  std::string token;
  std::chrono::seconds lease{30};  // the scheduler's lease duration, told to agents
  std::chrono::milliseconds tick{250};
  std::chrono::milliseconds poll_timeout{20000};
  int max_retries = 2;       // failures retried per job before it fails for good
  int grace_seconds = 60;    // SIGTERM to SIGKILL for a preempted job
  int checkpoint_every_steps = 200;
};

class Coordinator {
 public:
  // REQUIRES: every argument outlives the Coordinator.
  Coordinator(boost::asio::io_context& io, storage::Store& store, Scheduler& scheduler,
              const Clock& clock, CoordinatorOptions options);
  ~Coordinator();

  // Rebuilds the scheduler from the store: pending jobs queue again, jobs with a live attempt
  // keep their slots until their agents come back (or their leases run out).
  Status Restore();
  void AddRoutes(Router& router);
  // Starts the scheduler's timer.
  void Start();
  void Stop();

  // Connects the event stream; called once the HTTP server exists.
  void SetPublisher(std::function<void(const std::string&)> publish);
  std::vector<std::string> EventsSince(int64_t since) const { return events_.Since(since); }

 private:
  struct Command {
    nlohmann::json body;  // one entry of "launch" or "signal"
    bool launch = false;
  };
  struct AgentCommand {
    std::string agent_id;
    Command command;
  };
  struct WaitingPoll {
    Respond respond;
    std::unique_ptr<boost::asio::steady_timer> timer;
  };

  // Handlers.
  HttpResponse Health(const HttpRequest& request);
  HttpResponse SubmitSweep(const HttpRequest& request);
  HttpResponse ListSweeps(const HttpRequest& request);
  HttpResponse GetSweep(const HttpRequest& request);
  HttpResponse ListJobs(const HttpRequest& request);
  HttpResponse GetJob(const HttpRequest& request);
  HttpResponse JobMetrics(const HttpRequest& request);
  HttpResponse JobLogs(const HttpRequest& request);
  HttpResponse CancelJob(const HttpRequest& request);
  HttpResponse PreemptJob(const HttpRequest& request);
  HttpResponse SetPriority(const HttpRequest& request);
  HttpResponse ListAgents(const HttpRequest& request);
  HttpResponse Utilisation(const HttpRequest& request);
  HttpResponse Study(const HttpRequest& request);
  HttpResponse Export(const HttpRequest& request);
  HttpResponse RegisterAgent(const HttpRequest& request);
  void Poll(const HttpRequest& request, Respond respond);
  HttpResponse PostMetrics(const HttpRequest& request);
  HttpResponse PostResults(const HttpRequest& request);
  HttpResponse PostCheckpoint(const HttpRequest& request);
  HttpResponse PostExit(const HttpRequest& request);

  // Where a job's trainer keeps its checkpoints and reports, and an attempt's log, under
  // --runs-dir.
  std::string RunDir(const std::string& job_id) const;
  std::string AttemptLogPath(const std::string& job_id, int attempt) const;

  // The scheduler's decisions, persisted then sent.
  void Tick();
  Status Apply(const std::vector<Action>& actions, std::optional<int> exit_status = {});
  // Apply's writes; returns the first that failed. The commands for agents go to `commands`.
  Status Persist(const std::vector<Action>& actions, std::optional<int> exit_status,
                 std::vector<AgentCommand>* commands);
  // Answers the agent's parked poll, if any, with every command queued for it.
  void FlushPoll(const std::string& agent_id);
  void SampleUtilisation();

  // Lookups shared by handlers.
  Expected<storage::JobRecord> FindJob(const std::string& id_or_prefix);
  // The job's attempt in progress (no end time), or kNotFound.
  Expected<storage::AttemptRecord> OpenAttempt(const std::string& job_id);
  Expected<nlohmann::json> JobJson(const storage::JobRecord& job);
  nlohmann::json AgentJson(const AgentView& agent) const;
  // The spec vitscale-train runs for this attempt (docs/train-spec.md).
  nlohmann::json LaunchSpec(const storage::JobRecord& job, int attempt) const;
  // Parses {id} and {n} of /jobs/{id}/attempts/{n}/... and checks the attempt exists.
  Expected<std::pair<storage::JobRecord, int>> AttemptFromPath(const HttpRequest& request);

  boost::asio::io_context& io_;
  storage::Store& store_;
  Scheduler& scheduler_;
  const Clock& clock_;
  CoordinatorOptions options_;
  EventLog events_;
  boost::asio::steady_timer tick_timer_;
  bool stopped_ = false;

  std::map<std::string, std::deque<Command>> commands_;  // per agent, until its next poll
  std::map<std::string, WaitingPoll> waiting_;           // per agent: its open long poll
  struct UtilisationSample {
    double time;
    int busy;
    int total;
  };
  std::deque<UtilisationSample> utilisation_;
  std::vector<std::string> agent_ids_;  // every agent seen, for views
  std::map<std::string, TimePoint> agent_stored_at_;  // when each agent's heartbeat was stored
};

}  // namespace vitscale::coordinator
