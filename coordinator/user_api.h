// The API people and their tools call (docs/api.md, "Reading" and "Changing"): sweeps, jobs,
// logs, agents, utilisation, the study table and exports, and the admin's credential calls.
// Reading routes are Scope::kRead (open with --open-read); changing ones need the admin token.
//
// Threading: io thread only.
#pragma once

#include <deque>
#include <map>
#include <string>
#include <utility>

#include "coordinator/core.h"
#include "coordinator/credentials.h"
#include "planning/study_fits.h"

namespace vitscale::coordinator {

class UserApi {
 public:
  // REQUIRES: `core` and `credentials` outlive the UserApi.
  UserApi(Core& core, Credentials& credentials);

  void AddRoutes(Router& router);
  // Records cluster utilisation; called on every scheduler tick.
  void SampleUtilisation();

 private:
  HttpResponse Health(const HttpRequest& request);
  HttpResponse SubmitSweep(const HttpRequest& request);
  // kInvalidArgument, with the numbers, for the GPU job that most exceeds what the registered
  // hosts offer of its GPU kind.
  Status CheckGpusOffered(const std::vector<storage::JobRecord>& jobs);
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
  // Planning (docs/planning.md): the throughput table, the study's scaling-law fits, and a
  // sweep's real schedule beside its simulation.
  HttpResponse Throughput(const HttpRequest& request);
  HttpResponse ImportThroughput(const HttpRequest& request);
  HttpResponse StudyFits(const HttpRequest& request);
  HttpResponse Timeline(const HttpRequest& request);
  HttpResponse IssueCredential(const HttpRequest& request);
  HttpResponse RevokeCredential(const HttpRequest& request);

  // The sweep's scaling-law fits for `column`, refitted only when its results table changed: a
  // fit refits 200 bootstrap draws per group, seconds of the server thread's time.
  Expected<planning::StudyFits> FitsOf(const std::string& sweep, const std::string& column);
  // The job's detail view, or the error response.
  HttpResponse JobResponse(const storage::JobRecord& job);
  // Applies a scheduler decision about one job (cancel, preempt) and answers with the job after.
  HttpResponse ApplyAndShow(const std::string& job_id, Expected<std::vector<Action>> actions);

  Core& core_;
  Credentials& credentials_;
  struct UtilisationSample {
    double time;
    int busy;
    int total;
  };
  std::deque<UtilisationSample> utilisation_;
  struct CachedFits {
    std::string table_sha256;  // of the study view the fits were made from
    planning::StudyFits fits;
  };
  std::map<std::pair<std::string, std::string>, CachedFits> fits_;  // by sweep and column
};

}  // namespace vitscale::coordinator
