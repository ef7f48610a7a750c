// The API people and their tools call (docs/api.md, "Reading" and "Changing"): sweeps, jobs,
// logs, agents, utilisation, the study table and exports, and the admin's credential calls.
// Reading routes are Scope::kRead (open with --open-read); changing ones need the admin token.
//
// Threading: io thread only, but for the scaling-law fits: a study's fits take seconds, so one
// fitter thread makes them from data the io thread read, and hands them back to the io thread.
#pragma once

#include <boost/asio/thread_pool.hpp>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/core.h"
#include "coordinator/credentials.h"
#include "planning/study_fits.h"

namespace vitscale::coordinator {

class UserApi {
 public:
  // REQUIRES: `core` and `credentials` outlive the UserApi.
  UserApi(Core& core, Credentials& credentials);
  // Waits for a fit under way (it cannot be interrupted); fits queued behind it are dropped.
  ~UserApi();

  void AddRoutes(Router& router);
  // Fits handed to the fitter thread since start: the tests that check that kept fits are
  // answered, and new ones made only when the sweep's finished work changed, count them.
  int64_t fits_made() const { return fits_made_; }
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
  HttpResponse StudyRows(const HttpRequest& request);
  HttpResponse Export(const HttpRequest& request);
  // An export of the fits (`fits=1`): answered once they are made.
  void ExportFits(const HttpRequest& request, Respond respond);
  // Planning (docs/planning.md): the throughput table, the study's scaling-law fits, and a
  // sweep's real schedule beside its simulation.
  HttpResponse Throughput(const HttpRequest& request);
  HttpResponse ImportThroughput(const HttpRequest& request);
  void StudyFits(const HttpRequest& request, Respond respond);
  HttpResponse Timeline(const HttpRequest& request);
  HttpResponse IssueCredential(const HttpRequest& request);
  HttpResponse RevokeCredential(const HttpRequest& request);

  using FitsDone = std::function<void(Expected<planning::StudyFits>)>;
  // Calls `done` on the io thread with the sweep's scaling-law fits for `column`: at once when
  // nothing they show changed since the kept ones were made (storage::SweepMark), else once the
  // fitter thread has made them (200 bootstrap draws per group, which the io thread must not
  // spend). Requests for fits already being made wait for those; a kUnavailable error when
  // kMaxFitsUnderWay other fits are queued.
  void WithFits(const std::string& sweep, const std::string& column, FitsDone done);
  // Whether nothing of the sweep's finished work changed between `seen` and `now`; then `seen`
  // moves on to `now`, so that the next check looks only at what is newer.
  Expected<bool> Unchanged(storage::SweepMark& seen, const storage::SweepMark& now);
  // The study view's summary of the whole sweep (StudySummaryOf): the plots' points are of its
  // finished work, kept until its mark moves like the fits; the state counts are read fresh.
  Expected<protocol::Json> StudySummary(const std::string& sweep);
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
    storage::SweepMark mark;  // the sweep as the fits were made from it, or last found unchanged
    planning::StudyFits fits;
  };
  using FitsKey = std::pair<std::string, std::string>;  // sweep, column
  std::map<FitsKey, CachedFits> fits_;
  struct FitsUnderWay {
    storage::SweepMark mark;
    int64_t number = 0;  // which of fits_made_: a newer one supersedes it
    std::vector<FitsDone> waiting;
  };
  int64_t fits_made_ = 0;
  struct KeptSummary {
    storage::SweepMark mark;
    protocol::Json summary;
  };
  std::map<std::string, KeptSummary> summaries_;  // by sweep
  std::map<FitsKey, FitsUnderWay> fitting_;
  boost::asio::thread_pool fitter_{1};
  // The fitter's answers hold a weak copy: once the UserApi is gone they do nothing.
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

}  // namespace vitscale::coordinator
