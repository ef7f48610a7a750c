// The coordinator in process: its real routes, credentials and store (a temp file), driven
// through the same RequestGate the HTTP server uses, with a FakeClock, so that leases run out
// and backoffs pass without a test waiting for them.
#include "coordinator/coordinator.h"

#include <gtest/gtest.h>

#include <map>
#include <sqlite3.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <thread>

#include "common/files.h"
#include "protocol/agent.h"

namespace vitscale::coordinator {
namespace {

using protocol::Json;

// What the coordinator's runs folder holds, and agents that see it report.
constexpr char kRunsMark[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

constexpr char kSweep[] = R"(name: in-process
recipe: small-images
pretrain:
  dataset: fashion-mnist/0-4
  epochs: 1
  batch_size: 32
  subset_seed: 0
grid:
  model: [ViT-Mu/7]
  subset: [256, 512]
resources:
  ranks: 1
  gpus_per_rank: 0
)";

constexpr char kAdmin[] = "admin-token-for-the-in-process-test";

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "vitscale-core-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    OpenStore();
    Start();
  }
  void TearDown() override {
    coordinator_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void OpenStore() {
    storage::OpenOptions options;
    options.clock = &clock_;
    options.busy_timeout_ms = 50;
    auto store = storage::Store::Open(dir_ + "/vitscale.db", options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
  }

  // A coordinator over the store, as after a (re)start.
  void Start() {
    router_ = std::make_unique<Router>();
    CoordinatorOptions options;
    options.runs_dir = dir_ + "/runs";
    options.runs_mark = kRunsMark;
    options.public_url = "http://127.0.0.1:1";
    options.admin_token = kAdmin;
    options.max_retries = 1;
    auto coordinator = Coordinator::Create(io_, *store_, clock_, options);
    ASSERT_TRUE(coordinator.ok()) << coordinator.status().ToString();
    coordinator_ = std::move(coordinator).value();
    ASSERT_TRUE(coordinator_->Restore().ok());
    coordinator_->AddRoutes(*router_);
    gate_ = std::make_unique<RequestGate>(*router_, GateOptions{}, coordinator_->authorizer());
  }

  // One request through the gate; where its answer will be (empty while a poll is held).
  std::shared_ptr<std::optional<HttpResponse>> Send(const std::string& method,
                                                    const std::string& target,
                                                    const std::string& token,
                                                    const std::string& body = "") {
    auto answer = std::make_shared<std::optional<HttpResponse>>();
    gate_->Handle(method, target, token.empty() ? "" : "Bearer " + token, body,
                  [answer](HttpResponse response) { *answer = std::move(response); });
    Turn();
    return answer;
  }
  // Runs what is ready on the io_context, as a turn of the server's loop does (a poll that found
  // no work leaves it stopped, hence the restart), then waits for the metric writer to answer
  // the metric posts handed to it (it answers through the io_context).
  void Turn() {
    io_.restart();
    io_.poll();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (coordinator_ && coordinator_->reports().metric_posts_unanswered() > 0 &&
           std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_one_for(std::chrono::milliseconds(10));
    }
  }
  std::optional<HttpResponse> Call(const std::string& method, const std::string& target,
                                   const std::string& token, const std::string& body = "") {
    return *Send(method, target, token, body);
  }
  // A request answered from another thread's work (the fits): turns the loop until it is.
  Json AwaitJson(const std::string& method, const std::string& target, const std::string& token) {
    std::shared_ptr<std::optional<HttpResponse>> answer = Send(method, target, token);
    for (int i = 0; i < 3000 && !*answer; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      Turn();
    }
    EXPECT_TRUE(answer->has_value()) << method << " " << target << " had no answer in 30 s";
    if (!*answer) return nullptr;
    EXPECT_EQ((*answer)->status, 200) << method << " " << target << ": " << (*answer)->body;
    return Json::parse((*answer)->body, nullptr, false);
  }
  Json CallJson(const std::string& method, const std::string& target, const std::string& token,
                const std::string& body = "", int want = 200) {
    std::optional<HttpResponse> response = Call(method, target, token, body);
    EXPECT_TRUE(response.has_value()) << method << " " << target << " was held";
    if (!response) return nullptr;
    EXPECT_EQ(response->status, want) << method << " " << target << ": " << response->body;
    return Json::parse(response->body, nullptr, false);
  }

  std::string IssueAgent(const std::string& host) {
    return CallJson("POST", "/api/v1/agents/credentials", kAdmin, Json{{"host", host}}.dump())
        .value("token", "");
  }
  void Register(const std::string& host, const std::string& token, Json running = Json::array(),
                int slots = 1, bool sees_runs = true) {
    Json body = {{"host", host}, {"slots", slots}, {"gpus", 0}, {"running", running}};
    if (sees_runs) body["runs_mark"] = kRunsMark;
    CallJson("POST", "/api/v1/agents/register", token, body.dump());
  }
  // A poll answered at once (work was waiting), decoded.
  protocol::PollReply Poll(const std::string& host, const std::string& token, Json running) {
    std::optional<HttpResponse> response =
        Call("POST", "/api/v1/agents/" + host + "/poll", token, Json{{"running", running}}.dump());
    if (!response) return {};  // held: nothing for this agent now
    EXPECT_EQ(response->status, 200) << response->body;
    Expected<protocol::PollReply> reply = protocol::Decode<protocol::PollReply>(response->body);
    EXPECT_TRUE(reply.ok()) << reply.status().ToString();
    return reply.ok() ? *reply : protocol::PollReply{};
  }
  static std::string ReportToken(const protocol::LaunchEntry& launch) {
    return launch.spec["run"].value("report_token", "");
  }
  static std::string Prefix(const protocol::LaunchEntry& launch) {
    return "/api/v1/jobs/" + launch.job + "/attempts/" + std::to_string(launch.attempt);
  }
  // One exit as the agent sends it, a batch of one; its result.
  Json ReportExit(const std::string& host, const std::string& token,
                  const protocol::LaunchEntry& launch, const std::string& outcome, int status) {
    protocol::ExitOutcome parsed = *protocol::ParseExitOutcome(outcome);
    protocol::ExitBatch batch{{{launch.job, launch.attempt, parsed, status}}};
    Json reply = CallJson("POST", "/api/v1/agents/" + host + "/exits", token,
                          protocol::Dump(batch.ToJson()));
    return reply.is_object() && reply["results"].size() == 1 ? reply["results"][0] : Json();
  }
  static Json Running(const protocol::LaunchEntry& launch) {
    return Json::array({{{"job", launch.job}, {"attempt", launch.attempt}}});
  }
  Json Job(const std::string& id) { return CallJson("GET", "/api/v1/jobs/" + id, kAdmin); }
  // What the API shows of a job leased less than Core::kStateWriteDelay ago (its row is written
  // by the tick after that, or by its next transition): "pending", with its attempt open.
  static std::string Shown(const Json& job) {
    const Json& attempts = job["attempts"];
    bool open = !attempts.empty() && attempts.back()["ended_at"].is_null();
    std::string state = job.value("state", "");
    return state == "pending" && open ? "pending, attempt open" : state;
  }

  boost::asio::io_context io_;
  FakeClock clock_;
  std::string dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<RequestGate> gate_;
};

// One job of two ranks, as a sweep with `hosts: ANY_OR_ONE`.
std::string TwoRankSweep(const std::string& hosts) {
  return std::string(R"(name: two-ranks
recipe: small-images
pretrain:
  dataset: fashion-mnist/0-4
  epochs: 1
  batch_size: 32
  subset_seed: 0
grid:
  model: [ViT-Mu/7]
  subset: [256]
resources:
  ranks: 2
  hosts: )") + hosts + "\n";
}

constexpr char kPoint[] = R"({"points": [{"step": 1, "name": "loss", "value": 2.5}]})";

// A lease that runs out ends the attempt (lost, no retry used) and its report token with it; the
// job runs again as a new attempt with a new token, which survives a coordinator restart.
TEST_F(CoordinatorTest, ALostLeaseEndsTheAttemptAndItsToken) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, kSweep);
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent);
  protocol::PollReply first = Poll("host-a", agent, Json::array());
  ASSERT_EQ(first.launch.size(), 1u);
  protocol::LaunchEntry attempt1 = first.launch[0];
  EXPECT_EQ(attempt1.attempt, 1);
  std::string token1 = ReportToken(attempt1);
  CallJson("POST", Prefix(attempt1) + "/metrics", token1, kPoint);

  clock_.Advance(std::chrono::seconds(31));  // no heartbeat for longer than the lease
  coordinator_->core().Tick();
  Json job = Job(attempt1.job);
  EXPECT_EQ(job["state"], "pending");
  EXPECT_EQ(job["attempts"][0]["outcome"], "lost");
  std::optional<HttpResponse> late = Call("POST", Prefix(attempt1) + "/metrics", token1, kPoint);
  ASSERT_TRUE(late);
  EXPECT_EQ(late->status, 401) << late->body;

  // The agent is back: the job runs again, from a fresh attempt with a fresh token.
  Register("host-a", agent);
  protocol::PollReply second = Poll("host-a", agent, Json::array());
  ASSERT_EQ(second.launch.size(), 1u);
  protocol::LaunchEntry attempt2 = second.launch[0];
  EXPECT_EQ(attempt2.job, attempt1.job);
  EXPECT_EQ(attempt2.attempt, 2);
  EXPECT_NE(ReportToken(attempt2), token1);
  EXPECT_EQ(Shown(Job(attempt1.job)), "pending, attempt open");
  EXPECT_EQ(store_->GetJob(attempt1.job)->retries_left, 1);  // a lost lease is no failure

  // Restarted over the same store: the running attempt's token still works, the old one not.
  coordinator_.reset();
  Start();
  CallJson("POST", Prefix(attempt2) + "/metrics", ReportToken(attempt2), kPoint);
  EXPECT_EQ(Call("POST", Prefix(attempt1) + "/metrics", token1, kPoint)->status, 401);
  EXPECT_EQ(CallJson("GET", "/api/v1/jobs/" + attempt1.job + "/metrics", kAdmin)["points"].size(),
            2u);
}

// A failure waits out its backoff on the clock before the job runs again; the retry it used is
// stored, so a restart does not hand it back.
TEST_F(CoordinatorTest, AFailedJobBacksOffOnTheClockAndKeepsItsRetryCount) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, kSweep);
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent);
  protocol::LaunchEntry launch = Poll("host-a", agent, Json::array()).launch.at(0);
  ReportExit("host-a", agent, launch, "failed", 1);
  EXPECT_EQ(store_->GetJob(launch.job)->retries_left, 0);
  // The other job takes the slot; once it is done, the failed one still waits for its backoff.
  protocol::LaunchEntry other = Poll("host-a", agent, Json::array()).launch.at(0);
  ASSERT_NE(other.job, launch.job);
  ReportExit("host-a", agent, other, "succeeded", 0);
  auto held = Send("POST", "/api/v1/agents/host-a/poll", agent, R"({"running": []})");
  EXPECT_FALSE(*held) << "nothing to launch during the backoff: the poll is held";
  coordinator_->core().Tick();
  EXPECT_FALSE(*held);
  clock_.Advance(std::chrono::seconds(11));  // the first failure's backoff is 10 s
  coordinator_->core().Tick();
  io_.poll();
  ASSERT_TRUE(*held);
  Expected<protocol::PollReply> again = protocol::Decode<protocol::PollReply>((*held)->body);
  ASSERT_TRUE(again.ok()) << (*held)->body;
  ASSERT_EQ(again->launch.size(), 1u);
  EXPECT_EQ(again->launch[0].job, launch.job);
  EXPECT_EQ(again->launch[0].attempt, 2);
  coordinator_.reset();
  Start();
  EXPECT_EQ(store_->GetJob(launch.job)->retries_left, 0);
}

// A backoff survives a restart: the restarted coordinator reads when the failure happened (and
// how many there were) from the attempts, and does not relaunch the job before the backoff ends.
TEST_F(CoordinatorTest, ABackoffSurvivesARestart) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, kSweep);
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent);
  protocol::LaunchEntry launch = Poll("host-a", agent, Json::array()).launch.at(0);
  ReportExit("host-a", agent, launch, "failed", 1);
  // The other job takes the slot and ends; then only the failed one waits, for its backoff.
  protocol::LaunchEntry other = Poll("host-a", agent, Json::array()).launch.at(0);
  ASSERT_NE(other.job, launch.job);
  ReportExit("host-a", agent, other, "succeeded", 0);
  clock_.Advance(std::chrono::seconds(4));  // 6 s of the first failure's 10 s backoff remain

  coordinator_.reset();
  Start();
  Register("host-a", agent);
  auto held = Send("POST", "/api/v1/agents/host-a/poll", agent, R"({"running": []})");
  coordinator_->core().Tick();
  std::optional<JobView> view = coordinator_->core().scheduler().GetJob(launch.job);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->failures, 1) << "the failure count is restored, so the next backoff doubles";
  clock_.Advance(std::chrono::seconds(5));  // 9 s after the failure: still backing off
  coordinator_->core().Tick();
  io_.poll();
  EXPECT_FALSE(*held) << "relaunched before its backoff ended: " << (*held)->body;
  clock_.Advance(std::chrono::seconds(2));  // 11 s
  coordinator_->core().Tick();
  io_.poll();
  ASSERT_TRUE(*held);
  Expected<protocol::PollReply> again = protocol::Decode<protocol::PollReply>((*held)->body);
  ASSERT_TRUE(again.ok()) << (*held)->body;
  ASSERT_EQ(again->launch.size(), 1u);
  EXPECT_EQ(again->launch[0].job, launch.job);
  EXPECT_EQ(again->launch[0].attempt, 2);
}

// A store that refuses a write (here: another process holds the write lock) leaves no trace:
// the launch is neither recorded nor sent, and the scheduler goes back to what the store holds;
// once the store writes again, the job is launched, numbered as if nothing had happened.
TEST_F(CoordinatorTest, AFailedStoreWriteSendsNothingAndTheSchedulerFollowsTheStore) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, kSweep);
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent);
  protocol::LaunchEntry launch = Poll("host-a", agent, Json::array()).launch.at(0);
  ReportExit("host-a", agent, launch, "failed", 1);
  protocol::LaunchEntry other = Poll("host-a", agent, Json::array()).launch.at(0);
  ReportExit("host-a", agent, other, "succeeded", 0);
  EXPECT_FALSE(Call("POST", "/api/v1/agents/host-a/poll", agent, R"({"running": []})"));

  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/vitscale.db").c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  clock_.Advance(std::chrono::seconds(11));  // the backoff is over: the job is placed...
  coordinator_->core().Tick();               // ...but its attempt cannot be written
  io_.poll();
  EXPECT_EQ(coordinator_->core().mailbox().held_polls(), 1u) << "no launch may go out";
  EXPECT_EQ(Job(launch.job)["attempts"].size(), 1u);
  EXPECT_EQ(Job(launch.job)["state"], "pending");
  ASSERT_EQ(sqlite3_exec(holder, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(holder);

  coordinator_->core().Tick();  // the store writes again
  io_.poll();
  EXPECT_EQ(coordinator_->core().mailbox().held_polls(), 0u) << "the held poll got the launch";
  Json job = Job(launch.job);
  EXPECT_EQ(Shown(job), "pending, attempt open");
  ASSERT_EQ(job["attempts"].size(), 2u);
  EXPECT_EQ(job["attempts"][1]["number"], 2);
}

// A lease's row and a heartbeat's start report are written by a tick once they are
// Core::kStateWriteDelay old, in one change, not by the scheduling pass or the heartbeat. A
// start whose write fails (the store is busy) is not lost: the job stays leased (the store holds
// the lease as its open attempt, and the next tick writes its row) and the next heartbeat
// reports the start again.
TEST_F(CoordinatorTest, AStartIsWrittenByATickAndReportedAgainIfThatFails) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, kSweep);
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent);
  protocol::LaunchEntry launch = Poll("host-a", agent, Json::array()).launch.at(0);
  Send("POST", "/api/v1/agents/host-a/poll", agent, Json{{"running", Running(launch)}}.dump());
  coordinator_->core().Tick();
  EXPECT_EQ(Shown(Job(launch.job)), "pending, attempt open") << "written before its delay";
  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/vitscale.db").c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  clock_.Advance(Core::kStateWriteDelay);
  coordinator_->core().Tick();  // its write fails: the store is busy
  EXPECT_EQ(Shown(Job(launch.job)), "pending, attempt open");
  ASSERT_EQ(sqlite3_exec(holder, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(holder);
  clock_.Advance(Core::kStateWriteDelay);
  coordinator_->core().Tick();
  EXPECT_EQ(Job(launch.job)["state"], "leased")
      << "the failed start is dropped, not retried; the lease, restored from its attempt, is "
         "written";

  Send("POST", "/api/v1/agents/host-a/poll", agent, Json{{"running", Running(launch)}}.dump());
  clock_.Advance(Core::kStateWriteDelay);
  coordinator_->core().Tick();
  EXPECT_EQ(Job(launch.job)["state"], "running");
  EXPECT_EQ(Job(launch.job)["attempts"].size(), 1u);
}

// A job whose exit is reported before the tick that would write its lease and start goes from
// pending to its end in one change: the event stream shows no leased or running state for it,
// and its attempt and counts are those of any succeeded job.
TEST_F(CoordinatorTest, AStartAndAnExitBeforeTheTickAreOneChange) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, kSweep);
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent);
  protocol::LaunchEntry launch = Poll("host-a", agent, Json::array()).launch.at(0);
  int64_t since = coordinator_->core().events().last_seq();
  Send("POST", "/api/v1/agents/host-a/poll", agent, Json{{"running", Running(launch)}}.dump());
  EXPECT_EQ(ReportExit("host-a", agent, launch, "succeeded", 0)["result"], "recorded");
  std::vector<std::string> states;
  for (const EventLog::Message& message : coordinator_->core().events().Since(since)) {
    Json event = Json::parse(*message);
    if (event["type"] == "job" && event["job"] == launch.job) {
      states.push_back(event["data"]["state"]);
    }
  }
  EXPECT_EQ(states, std::vector<std::string>{"succeeded"});
  Json job = Job(launch.job);
  EXPECT_EQ(job["state"], "succeeded");
  ASSERT_EQ(job["attempts"].size(), 1u);
  EXPECT_EQ(job["attempts"][0]["outcome"], "succeeded");
  Json sweeps = CallJson("GET", "/api/v1/sweeps", kAdmin);
  ASSERT_EQ(sweeps["sweeps"].size(), 1u) << sweeps;
  Json by_state = sweeps["sweeps"][0]["by_state"];
  EXPECT_EQ(by_state.value("succeeded", 0), 1) << sweeps;
  EXPECT_EQ(by_state.value("running", 0), 0) << sweeps;
  EXPECT_EQ(by_state.value("leased", 0), 0) << sweeps;
  EXPECT_EQ(by_state.value("pending", 0), 1) << sweeps;
}

// A submission places its jobs before it announces them and answers: the held poll of a free
// agent gets their launches before any event of theirs is written, and each new job's first
// event is still its own, pending (a lease is not announced).
TEST_F(CoordinatorTest, ASubmissionLaunchesBeforeItAnnouncesItsJobs) {
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent, Json::array(), /*slots=*/2);
  int64_t since = coordinator_->core().events().last_seq();
  std::vector<std::string> answered;
  std::optional<HttpResponse> poll;
  int64_t events_at_poll = -1;
  gate_->Handle("POST", "/api/v1/agents/host-a/poll", "Bearer " + agent,
                Json{{"running", Json::array()}}.dump(), [&](HttpResponse response) {
                  answered.push_back("poll");
                  events_at_poll = coordinator_->core().events().last_seq();
                  poll = std::move(response);
                });
  Turn();
  ASSERT_TRUE(answered.empty()) << "the poll was answered with no work waiting";
  gate_->Handle("POST", "/api/v1/sweeps", std::string("Bearer ") + kAdmin, kSweep,
                [&](HttpResponse response) {
                  answered.push_back("sweep " + std::to_string(response.status));
                });
  Turn();
  EXPECT_EQ(answered, (std::vector<std::string>{"poll", "sweep 200"}));
  EXPECT_EQ(events_at_poll, since);
  ASSERT_TRUE(poll.has_value());
  Expected<protocol::PollReply> reply = protocol::Decode<protocol::PollReply>(poll->body);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  ASSERT_EQ(reply->launch.size(), 2u);

  std::map<std::string, std::vector<std::string>> states;
  std::vector<std::string> types;
  for (const EventLog::Message& message : coordinator_->core().events().Since(since)) {
    Json event = Json::parse(*message);
    types.push_back(event["type"]);
    if (event["type"] == "job") states[event["job"]].push_back(event["data"]["state"]);
  }
  EXPECT_EQ(types, (std::vector<std::string>{"job", "job", "sweep"}));
  for (const protocol::LaunchEntry& launch : reply->launch) {
    EXPECT_EQ(states[launch.job], std::vector<std::string>{"pending"}) << launch.job;
  }
}

// Four jobs, for the exit-batch tests.
std::string FourJobSweep() {
  std::string text = kSweep;
  text.replace(text.find("[256, 512]"), 10, "[256, 512, 1024, 2048]");
  return text;
}

Json ExitJson(const protocol::LaunchEntry& launch, const std::string& outcome, int status) {
  return Json{{"job", launch.job}, {"attempt", launch.attempt}, {"outcome", outcome},
              {"exit_status", status}};
}

std::vector<std::string> ResultsOf(const Json& reply) {
  std::vector<std::string> results;
  for (const Json& r : reply["results"]) results.push_back(r["result"]);
  return results;
}

// The exits of one batch are recorded together: an exit that cannot be recorded (an unknown
// attempt, one this agent did not lead) gets its own result and the others are recorded; a
// malformed exit refuses the whole batch, naming it, and records nothing.
TEST_F(CoordinatorTest, AnExitBatchRecordsItsGoodExitsAndSaysWhyOthersWereNot) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, FourJobSweep());
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent, Json::array(), /*slots=*/3);
  std::string other = IssueAgent("host-b");
  Register("host-b", other, Json::array(), /*slots=*/1);
  std::vector<protocol::LaunchEntry> a = Poll("host-a", agent, Json::array()).launch;
  std::vector<protocol::LaunchEntry> b = Poll("host-b", other, Json::array()).launch;
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 1u);

  std::string exits = "/api/v1/agents/host-a/exits";
  Json malformed = {{"exits", {ExitJson(a[0], "succeeded", 0), ExitJson(a[1], "done", 0)}}};
  Json refusal = CallJson("POST", exits, agent, malformed.dump(), 400);
  EXPECT_NE(refusal.value("error", "").find("exits[1].outcome"), std::string::npos) << refusal;
  EXPECT_EQ(Shown(Job(a[0].job)), "pending, attempt open")
      << "nothing of a refused batch is recorded";
  Json twice = {{"exits", {ExitJson(a[0], "succeeded", 0), ExitJson(a[0], "failed", 1)}}};
  refusal = CallJson("POST", exits, agent, twice.dump(), 400);
  EXPECT_NE(refusal.value("error", "").find("exits[1]: attempt 1 of job " + a[0].job +
                                            " is listed twice"),
            std::string::npos)
      << refusal;
  // Another host's credential cannot send host-a's batch.
  EXPECT_EQ(Call("POST", exits, other, Json{{"exits", {ExitJson(a[0], "succeeded", 0)}}}.dump())
                ->status,
            403);

  protocol::LaunchEntry unknown_attempt = a[2];
  unknown_attempt.attempt = 7;
  Json batch = {{"exits",
                 {ExitJson(a[0], "succeeded", 0), ExitJson(b[0], "succeeded", 0),
                  ExitJson(unknown_attempt, "failed", 1), ExitJson(a[1], "failed", 3),
                  ExitJson(a[2], "succeeded", 0)}}};
  Json reply = CallJson("POST", exits, agent, batch.dump());
  EXPECT_EQ(ResultsOf(reply),
            (std::vector<std::string>{"recorded", "refused", "refused", "recorded", "recorded"}));
  EXPECT_EQ(reply["results"][1]["message"],
            "agent 'host-a' did not lead attempt 1 of job " + b[0].job +
                "; only its leader reports its exit");
  EXPECT_NE(reply["results"][2].value("message", "").find("7"), std::string::npos) << reply;
  EXPECT_EQ(Job(a[0].job)["state"], "succeeded");
  EXPECT_EQ(Job(a[2].job)["state"], "succeeded");
  Json failed = Job(a[1].job);
  EXPECT_EQ(failed["state"], "pending") << "a failure with a retry left backs off";
  EXPECT_EQ(failed["attempts"][0]["exit_status"], 3);
  EXPECT_EQ(failed["attempts"][0]["outcome"], "failed");
  EXPECT_EQ(Shown(Job(b[0].job)), "pending, attempt open") << "host-b's job is host-b's to report";
}

// A cancel ends the running attempt at once; the slot is free again when the leader's exit
// comes, and the next job is placed on it then.
TEST_F(CoordinatorTest, TheExitOfACancelledJobFreesItsSlot) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, kSweep);
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent);
  protocol::LaunchEntry launch = Poll("host-a", agent, Json::array()).launch.at(0);
  CallJson("POST", "/api/v1/jobs/" + launch.job + "/cancel", kAdmin);
  EXPECT_EQ(Job(launch.job)["attempts"][0]["outcome"], "cancelled");
  Json batch = {{"exits", {ExitJson(launch, "killed", 137)}}};
  Json reply = CallJson("POST", "/api/v1/agents/host-a/exits", agent, batch.dump());
  EXPECT_EQ(ResultsOf(reply), std::vector<std::string>{"ended"}) << reply;
  std::vector<protocol::LaunchEntry> next = Poll("host-a", agent, Json::array()).launch;
  ASSERT_EQ(next.size(), 1u) << "the cancelled job's slot was not freed by its exit";
  EXPECT_NE(next[0].job, launch.job);
  EXPECT_EQ(Job(launch.job)["state"], "cancelled");
}

// One transaction for the whole batch: when the database refuses the write of its last exit
// (a trigger stands in for a disk that fails mid-batch), the exits before it are not recorded
// either, and the scheduler still holds all their leases; sent again, the batch is recorded.
TEST_F(CoordinatorTest, AnExitBatchIsOneTransaction) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, FourJobSweep());
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent, Json::array(), /*slots=*/4);
  std::vector<protocol::LaunchEntry> a = Poll("host-a", agent, Json::array()).launch;
  ASSERT_EQ(a.size(), 4u);
  Json batch = {{"exits", Json::array()}};
  for (const protocol::LaunchEntry& l : a) batch["exits"].push_back(ExitJson(l, "succeeded", 0));

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/vitscale.db").c_str(), &db), SQLITE_OK);
  std::string trigger = "CREATE TRIGGER refuse_last BEFORE UPDATE OF state ON jobs WHEN NEW.id = '" +
                        a[3].job + "' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END";
  ASSERT_EQ(sqlite3_exec(db, trigger.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  std::optional<HttpResponse> refused =
      Call("POST", "/api/v1/agents/host-a/exits", agent, batch.dump());
  ASSERT_TRUE(refused);
  EXPECT_GE(refused->status, 400) << refused->body;
  EXPECT_NE(refused->body.find("refused by the test"), std::string::npos) << refused->body;
  for (const protocol::LaunchEntry& l : a) {
    EXPECT_EQ(Shown(Job(l.job)), "pending, attempt open")
        << "exit of " << l.job << " recorded alone";
    std::optional<JobView> view = coordinator_->core().scheduler().GetJob(l.job);
    ASSERT_TRUE(view);
    EXPECT_EQ(view->holders.size(), 1u) << "the scheduler follows the store: the lease is held";
  }
  ASSERT_EQ(sqlite3_exec(db, "DROP TRIGGER refuse_last", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  EXPECT_EQ(ResultsOf(CallJson("POST", "/api/v1/agents/host-a/exits", agent, batch.dump())),
            (std::vector<std::string>(4, "recorded")));
  for (const protocol::LaunchEntry& l : a) EXPECT_EQ(Job(l.job)["state"], "succeeded");
}

// Exactly once: a batch whose answer the agent never got (the coordinator died after the
// commit, or the connection broke) is sent again, also to a restarted coordinator, and each
// exit it holds is then answered "ended" and changes nothing; a batch the store could not
// commit records nothing, and the same batch sent again is recorded once.
TEST_F(CoordinatorTest, AnExitBatchSentAgainIsRecordedExactlyOnce) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, FourJobSweep());
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent, Json::array(), /*slots=*/4);
  std::vector<protocol::LaunchEntry> a = Poll("host-a", agent, Json::array()).launch;
  ASSERT_EQ(a.size(), 4u);
  std::string exits = "/api/v1/agents/host-a/exits";
  Json first = {{"exits", {ExitJson(a[0], "succeeded", 0), ExitJson(a[1], "failed", 1)}}};
  Json second = {{"exits", {ExitJson(a[2], "failed", 1), ExitJson(a[3], "succeeded", 0)}}};

  // The store cannot commit (another process holds its write lock): the whole batch is
  // refused, nothing of it is recorded, and the scheduler still has the leases.
  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/vitscale.db").c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  std::optional<HttpResponse> locked = Call("POST", exits, agent, first.dump());
  ASSERT_TRUE(locked);
  EXPECT_EQ(locked->status, 503) << locked->body;
  ASSERT_EQ(sqlite3_exec(holder, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(holder);
  for (const protocol::LaunchEntry& l : a) {
    Json job = Job(l.job);
    EXPECT_EQ(Shown(job), "pending, attempt open");
    EXPECT_TRUE(job["attempts"][0]["outcome"].is_null()) << job;
  }
  Json all_running = Json::array();
  for (const protocol::LaunchEntry& l : a) all_running.push_back(Running(l)[0]);
  // A heartbeat for all four is accepted (held: there is no work), not refused as not held.
  auto polled = Send("POST", "/api/v1/agents/host-a/poll", agent,
                     Json{{"running", all_running}}.dump());
  EXPECT_FALSE(*polled) << "the refused batch released no lease: " << (*polled)->body;

  // Sent again: recorded, once.
  EXPECT_EQ(ResultsOf(CallJson("POST", exits, agent, first.dump())),
            (std::vector<std::string>{"recorded", "recorded"}));
  EXPECT_EQ(Job(a[0].job)["state"], "succeeded");
  EXPECT_EQ(store_->GetJob(a[1].job)->retries_left, 0);
  // The answer was lost: the agent sends the batch again, and nothing changes.
  Json again = CallJson("POST", exits, agent, first.dump());
  EXPECT_EQ(ResultsOf(again), (std::vector<std::string>{"ended", "ended"}));
  EXPECT_EQ(again["results"][1]["message"],
            "attempt 1 of job " + a[1].job + " has already ended (failed)");
  EXPECT_EQ(store_->GetJob(a[1].job)->retries_left, 0) << "no second retry used";
  EXPECT_EQ(Job(a[1].job)["attempts"].size(), 1u);

  // The second batch is committed, then the coordinator dies before answering; the agent
  // sends it again to the restarted coordinator, first unregistered (404: register first).
  EXPECT_EQ(ResultsOf(CallJson("POST", exits, agent, second.dump())),
            (std::vector<std::string>{"recorded", "recorded"}));
  coordinator_.reset();
  Start();
  EXPECT_EQ(Call("POST", exits, agent, second.dump())->status, 404);
  Register("host-a", agent, Json::array(), /*slots=*/4);
  EXPECT_EQ(ResultsOf(CallJson("POST", exits, agent, second.dump())),
            (std::vector<std::string>{"ended", "ended"}));
  EXPECT_EQ(store_->GetJob(a[2].job)->retries_left, 0);
  EXPECT_EQ(Job(a[2].job)["attempts"].size(), 1u);
  EXPECT_EQ(Job(a[3].job)["state"], "succeeded");
}

// GPU jobs (docs/gpu.md): refused at submission, with the numbers, when the registered hosts
// do not have enough GPUs of their kind; placed on GPU indices no other job holds, with
// run.gpus_per_rank in the trainer's spec; and after a coordinator restart, the indices the
// agent says its jobs use are the ones kept from the next job.
TEST_F(CoordinatorTest, GpuJobsGetGpusOfTheirKindByIndexOrAreRefusedWithTheNumbers) {
  auto gpu_sweep = [](const std::string& name, int ranks, const std::string& subsets) {
    std::string text = kSweep;
    text.replace(text.find("in-process"), 10, name);
    text.replace(text.find("[256, 512]"), 10, subsets);
    text.replace(text.find("  ranks: 1\n  gpus_per_rank: 0\n"), 30,
                 "  ranks: " + std::to_string(ranks) +
                     "\n  gpus_per_rank: 1\n  accelerator: NVIDIA H200\n");
    return text;
  };
  auto refusal = [&](const std::string& text) {
    std::optional<HttpResponse> response = Call("POST", "/api/v1/sweeps", kAdmin, text);
    EXPECT_TRUE(response && response->status == 400) << (response ? response->body : "held");
    return response ? Json::parse(response->body, nullptr, false).value("error", "") : "";
  };
  EXPECT_NE(refusal(gpu_sweep("gpus", 2, "[256, 512]"))
                .find("asks for 2 GPUs of kind 'NVIDIA H200' (2 ranks x gpus_per_rank 1), but "
                      "the registered hosts offer 0 in all (no host offers GPUs)"),
            std::string::npos);
  std::string cpu_token = IssueAgent("host-a");
  Register("host-a", cpu_token);
  std::string gpu_token = IssueAgent("host-g");
  auto register_gpu_host = [&](Json running) {
    CallJson("POST", "/api/v1/agents/register", gpu_token,
             Json{{"host", "host-g"}, {"slots", 8}, {"gpus", 4}, {"gpu_kind", "NVIDIA H200"},
                  {"running", running}}.dump());
  };
  register_gpu_host(Json::array());
  EXPECT_NE(refusal(gpu_sweep("gpus", 5, "[256]"))
                .find("asks for 5 GPUs of kind 'NVIDIA H200' (5 ranks x gpus_per_rank 1), but "
                      "the registered hosts offer 4 in all (host-g 4 x NVIDIA H200)"),
            std::string::npos);
  EXPECT_EQ(CallJson("GET", "/api/v1/jobs", kAdmin)["jobs"].size(), 0u) << "nothing was stored";

  CallJson("POST", "/api/v1/sweeps", kAdmin, gpu_sweep("gpus", 2, "[256, 512]"));
  EXPECT_FALSE(Call("POST", "/api/v1/agents/host-a/poll", cpu_token, R"({"running": []})"))
      << "no GPU job on a host without GPUs: the poll is held";
  std::vector<protocol::LaunchEntry> launches =
      Poll("host-g", gpu_token, Json::array()).launch;
  ASSERT_EQ(launches.size(), 2u);
  std::vector<protocol::HostGpus> first = launches[0].gpus, second = launches[1].gpus;
  EXPECT_EQ(first, (std::vector<protocol::HostGpus>{{"host-g", {0, 1}}}));
  EXPECT_EQ(second, (std::vector<protocol::HostGpus>{{"host-g", {2, 3}}}));
  EXPECT_EQ(launches[0].spec["run"]["gpus_per_rank"], 1);
  EXPECT_EQ(launches[0].ranks, 2);
  Json agents = CallJson("GET", "/api/v1/agents", kAdmin)["agents"];
  for (const Json& agent : agents) {
    if (agent["id"] != "host-g") continue;
    EXPECT_EQ(agent["gpu_kind"], "NVIDIA H200");
    EXPECT_EQ(agent["free_gpus"], 0);
  }

  // Restarted: the agent lists which GPUs each job uses; one job ends, and the next job gets
  // the GPUs that one gave back, not those the other still holds.
  coordinator_.reset();
  Start();
  register_gpu_host(Json::array({{{"job", launches[0].job}, {"attempt", 1}, {"gpus", {0, 1}}},
                                 {{"job", launches[1].job}, {"attempt", 1}, {"gpus", {2, 3}}}}));
  ReportExit("host-g", gpu_token, launches[1], "succeeded", 0);
  CallJson("POST", "/api/v1/sweeps", kAdmin, gpu_sweep("more-gpus", 2, "[1024]"));
  std::vector<protocol::LaunchEntry> next =
      Poll("host-g", gpu_token, Running(launches[0])).launch;
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].gpus, (std::vector<protocol::HostGpus>{{"host-g", {2, 3}}}));
}

// Exit 79 (out of memory) with a halved batch recorded by the trainer is not a blind retry: the
// job runs again at once without using a retry, and its events say with which micro-batch. The
// same exit with nothing smaller recorded is a failure like any other, and the trainer's
// "even micro-batch 1 does not fit" (a configuration error) fails the job for good.
TEST_F(CoordinatorTest, OutOfMemoryRetriesWithTheHalvedBatchWithoutUsingARetry) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, kSweep);
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent);
  protocol::LaunchEntry launch = Poll("host-a", agent, Json::array()).launch.at(0);
  std::string limits = dir_ + "/runs/" + launch.job + "/out_of_memory.json";
  std::filesystem::create_directories(dir_ + "/runs/" + launch.job);
  auto write_limits = [&](int micro) {
    ASSERT_TRUE(WriteFileAtomically(limits, Json{{"micro_batch", micro}, {"eval_batch", 0}}.dump())
                    .ok());
  };
  std::vector<EventLog::Message> events;
  coordinator_->SetPublisher([&](EventLog::Message m) { events.push_back(std::move(m)); });
  auto notes = [&] {
    std::vector<std::string> found;
    for (const EventLog::Message& m : events) {
      Json event = Json::parse(*m);
      if (event["type"] == "note" && event["job"] == launch.job) {
        found.push_back(event["data"]["message"]);
      }
    }
    return found;
  };
  auto exit = [&](const protocol::LaunchEntry& l, const std::string& outcome, int status) {
    ReportExit("host-a", agent, l, outcome, status);
  };
  write_limits(64);
  exit(launch, "failed", 79);
  Json job = Job(launch.job);
  EXPECT_EQ(job["attempts"][0]["exit_status"], 79);
  EXPECT_EQ(job["attempts"][0]["outcome"], "failed");
  EXPECT_EQ(store_->GetJob(launch.job)->retries_left, 1) << "no retry used";
  ASSERT_EQ(notes().size(), 1u);
  EXPECT_EQ(notes()[0],
            "attempt 1 ran out of memory training with micro-batch 64; attempt 2 trains with "
            "micro-batch 32 (the same global batch, accumulated); an out-of-memory exit uses no "
            "retry");
  // No backoff: placed again at once on the one slot (the other job of the sweep waits).
  EXPECT_EQ(job["state"], "leased");
  protocol::LaunchEntry second = Poll("host-a", agent, Json::array()).launch.at(0);
  EXPECT_EQ(second.job, launch.job);
  EXPECT_EQ(second.attempt, 2);

  exit(second, "failed", 79);  // and out_of_memory.json still says 64: nothing was halved
  EXPECT_EQ(store_->GetJob(launch.job)->retries_left, 0) << "a blind retry uses one";
  ASSERT_EQ(notes().size(), 2u);
  EXPECT_NE(notes()[1].find("records no smaller batch than before; counted as a failure"),
            std::string::npos);

  // The sweep's other job takes the slot during the backoff.
  protocol::LaunchEntry other = Poll("host-a", agent, Json::array()).launch.at(0);
  ASSERT_NE(other.job, launch.job);
  exit(other, "succeeded", 0);
  clock_.Advance(std::chrono::seconds(11));  // the failure's backoff
  coordinator_->core().Tick();
  protocol::LaunchEntry third = Poll("host-a", agent, Json::array()).launch.at(0);
  ASSERT_EQ(third.job, launch.job);
  exit(third, "config_error", 78);  // "even run.micro_batch 1 does not fit"
  EXPECT_EQ(Job(launch.job)["state"], "failed");
}

}  // namespace
}  // namespace vitscale::coordinator

namespace vitscale::coordinator {
namespace {

// A gang loses its non-leader host: the job is requeued and placed again at once, here on the
// leader's host and the spare one. Every kill names the lost attempt, the new launch the next
// one, so the leader's agent, which gets both in one reply, stops only the old processes; and
// the kill that waits for the lost host names an attempt its restarted agent never had.
TEST_F(CoordinatorTest, AGangThatLosesAHostIsKilledByAttemptAndPlacedAgain) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, TwoRankSweep("any"));
  std::map<std::string, std::string> tokens;
  for (const char* host : {"host-a", "host-b"}) {
    tokens[host] = IssueAgent(host);
    Register(host, tokens[host]);
  }
  protocol::PollReply a = Poll("host-a", tokens["host-a"], Json::array());
  protocol::PollReply b = Poll("host-b", tokens["host-b"], Json::array());
  ASSERT_EQ(a.launch.size() + b.launch.size(), 2u);
  bool a_leads = !a.launch.at(0).hold;
  std::string leader = a_leads ? "host-a" : "host-b", member = a_leads ? "host-b" : "host-a";
  protocol::LaunchEntry first = a_leads ? a.launch[0] : b.launch[0];
  EXPECT_EQ(first.attempt, 1);
  EXPECT_EQ(first.hosts.size(), 2u);
  tokens["host-c"] = IssueAgent("host-c");
  Register("host-c", tokens["host-c"]);

  // The leader and the spare host heartbeat; the member is gone.
  clock_.Advance(std::chrono::seconds(20));
  Send("POST", "/api/v1/agents/" + leader + "/poll", tokens[leader],
       Json{{"running", Running(first)}}.dump());
  Send("POST", "/api/v1/agents/host-c/poll", tokens["host-c"], R"({"running": []})");
  clock_.Advance(std::chrono::seconds(11));
  auto leader_reply = Send("POST", "/api/v1/agents/" + leader + "/poll", tokens[leader],
                           Json{{"running", Running(first)}}.dump());
  auto spare_reply =
      Send("POST", "/api/v1/agents/host-c/poll", tokens["host-c"], R"({"running": []})");
  coordinator_->core().Tick();
  io_.poll();
  ASSERT_TRUE(*leader_reply && *spare_reply);
  Expected<protocol::PollReply> to_leader = protocol::Decode<protocol::PollReply>((*leader_reply)->body);
  Expected<protocol::PollReply> to_spare = protocol::Decode<protocol::PollReply>((*spare_reply)->body);
  ASSERT_TRUE(to_leader.ok() && to_spare.ok());
  ASSERT_EQ(to_leader->signal.size(), 1u) << (*leader_reply)->body;
  EXPECT_EQ(to_leader->signal[0].action, protocol::SignalAction::kKill);
  EXPECT_EQ(to_leader->signal[0].attempt, 1);
  ASSERT_EQ(to_leader->launch.size(), 1u) << (*leader_reply)->body;
  ASSERT_EQ(to_spare->launch.size(), 1u) << (*spare_reply)->body;
  EXPECT_EQ(to_leader->launch[0].attempt, 2);
  EXPECT_EQ(to_spare->launch[0].attempt, 2);
  Json job = Job(first.job);
  ASSERT_EQ(job["attempts"].size(), 2u);
  EXPECT_EQ(job["attempts"][0]["outcome"], "lost");

  // The lost host's agent restarts: what waited for it is the kill of attempt 1 only.
  Register(member, tokens[member]);
  protocol::PollReply to_member = Poll(member, tokens[member], Json::array());
  ASSERT_EQ(to_member.signal.size(), 1u);
  EXPECT_EQ(to_member.signal[0].attempt, 1);
  EXPECT_TRUE(to_member.launch.empty());
}

// `hosts: one` keeps a job's ranks on one host: two hosts of one slot each do not run it, a host
// with two slots does.
TEST_F(CoordinatorTest, AOneHostJobWaitsForAHostWithRoomForAllItsRanks) {
  Json added = CallJson("POST", "/api/v1/sweeps", kAdmin, TwoRankSweep("one"));
  std::string small_a = IssueAgent("small-a"), small_b = IssueAgent("small-b");
  Register("small-a", small_a);
  Register("small-b", small_b);
  EXPECT_FALSE(*Send("POST", "/api/v1/agents/small-a/poll", small_a, R"({"running": []})"));
  EXPECT_FALSE(*Send("POST", "/api/v1/agents/small-b/poll", small_b, R"({"running": []})"));
  std::string big = IssueAgent("big");
  Register("big", big, Json::array(), /*slots=*/2);
  protocol::PollReply reply = Poll("big", big, Json::array());
  ASSERT_EQ(reply.launch.size(), 1u);
  EXPECT_EQ(protocol::HostsString(reply.launch[0].hosts), "big:2");
  EXPECT_NE(CallJson("POST", "/api/v1/sweeps", kAdmin, TwoRankSweep("two"), 400)
                .value("error", "")
                .find("'hosts' must be 'one'"),
            std::string::npos);
}

// A host that does not see the coordinator's runs folder (its runs mark is missing) is never
// part of a gang: a two-rank job waits rather than run to a resume that cannot find its files.
// The study view is the stored table; the fits follow it: kept while the table is the same,
// made again once a result or a ledger entry changes it.
TEST_F(CoordinatorTest, TheStudyViewAndItsFitsFollowTheStoredResults) {
  Json submitted = CallJson("POST", "/api/v1/sweeps", kAdmin, kSweep);
  std::vector<std::string> ids = submitted["jobs"];
  ASSERT_EQ(ids.size(), 2u);
  Json study = CallJson("GET", "/api/v1/study/in-process", kAdmin);
  ASSERT_EQ(study["rows"].size(), 2u);
  EXPECT_TRUE(study["columns"].empty());
  for (size_t i = 0; i < ids.size(); ++i) {
    const Json& row = study["rows"][i];
    EXPECT_EQ(row["job"], ids[i]);  // the sweep's order
    EXPECT_EQ(row["model"], "ViT-Mu/7");
    EXPECT_EQ(row["family"], "ViT");
    EXPECT_TRUE(row["epochs"].is_number_float());
    EXPECT_EQ(row["state"], "pending");
    EXPECT_EQ(row["planned"], true);
    EXPECT_TRUE(row["device_hours"].is_null());
    EXPECT_EQ(row["results"], Json::object());
    EXPECT_TRUE(row["average"].is_null());
  }
  EXPECT_TRUE(AwaitJson("GET", "/api/v1/study/in-process/fits", kAdmin)["compute"].empty());
  // A state change that leaves the finished work as it was (the kept points stay) still shows
  // in the counts.
  ASSERT_TRUE(store_->SetJobState(ids[0], JobState::kLeased).ok());
  EXPECT_EQ(CallJson("GET", "/api/v1/study/in-process", kAdmin)["by_state"],
            Json({{"leased", 1}, {"pending", 1}}));

  // Both jobs finish, as far as the store knows: an attempt, its ledger, two seeds of results.
  for (size_t i = 0; i < ids.size(); ++i) {
    auto attempt = store_->AddAttempt(ids[i], std::nullopt, "localhost:1");
    ASSERT_TRUE(attempt.ok()) << attempt.status().ToString();
    ASSERT_TRUE(store_->EndAttempt(ids[i], *attempt, storage::AttemptOutcome::kSucceeded, 0).ok());
    std::vector<storage::ResultRecord> results;
    for (int seed = 0; seed < 2; ++seed) {
      results.push_back({ids[i], storage::Evaluation::kFewShot, "digits", 5, seed, "accuracy",
                         0.6 + 0.1 * static_cast<double>(i) + 0.02 * seed});
    }
    storage::LedgerEntry ledger{ids[i], *attempt, 2e15, 1e12, 256, "cpu", 7200, 7200};
    ASSERT_TRUE(store_->AddResultsAndLedger(results, ledger).ok());
    ASSERT_TRUE(store_->SetJobState(ids[i], JobState::kSucceeded).ok());
  }
  study = CallJson("GET", "/api/v1/study/in-process", kAdmin);
  EXPECT_EQ(study["columns"], Json::array({"digits 5-shot"}));
  const Json& second = study["rows"][1];
  EXPECT_EQ(second["planned"], false);
  EXPECT_DOUBLE_EQ(second["exaflops"].get<double>(), 2e-3);
  EXPECT_DOUBLE_EQ(second["device_hours"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(second["results"]["digits 5-shot"].get<double>(), 0.71);
  EXPECT_DOUBLE_EQ(second["average"].get<double>(), 0.71);
  // The summary: the counts, and one point per model, epochs and subset size at the mean of
  // its jobs, per column and compute axis.
  EXPECT_EQ(study["jobs"], 2);
  EXPECT_EQ(study["by_state"], Json({{"succeeded", 2}}));
  EXPECT_EQ(study["not_run"], 0);
  auto expect_points_of_rows = [](const Json& study) {
    std::map<std::string, std::vector<const Json*>> rows_of;
    for (const Json& row : study["rows"]) {
      rows_of[row["model"].get<std::string>() + "|" + row["epochs"].dump() + "|" +
              row["subset_size"].dump()]
          .push_back(&row);
    }
    ASSERT_EQ(study["points"].size(), rows_of.size()) << study.dump();
    for (const Json& point : study["points"]) {
      const auto& rows = rows_of.at(point["model"].get<std::string>() + "|" +
                                    point["epochs"].dump() + "|" + point["subset_size"].dump());
      double accuracy = 0, exaflops = 0, hours = 0;
      for (const Json* row : rows) {
        accuracy += (*row)["average"].get<double>() / static_cast<double>(rows.size());
        exaflops += (*row)["exaflops"].get<double>() / static_cast<double>(rows.size());
        hours += (*row)["device_hours"].get<double>() / static_cast<double>(rows.size());
      }
      for (const char* column : {"average", "digits 5-shot"}) {
        const Json& mean = point["values"][column];
        EXPECT_EQ(mean["runs"], rows.size());
        EXPECT_NEAR(mean["accuracy"].get<double>(), accuracy, 1e-12);
        EXPECT_NEAR(mean["exaflops"]["x"].get<double>(), exaflops, 1e-15);
        EXPECT_NEAR(mean["device_hours"]["x"].get<double>(), hours, 1e-12);
        EXPECT_EQ(mean["device_hours"]["runs"], rows.size());
      }
    }
  };
  expect_points_of_rows(study);
  // The rows page by cursor.
  Json one = CallJson("GET", "/api/v1/study/in-process/rows?limit=1", kAdmin);
  ASSERT_EQ(one["rows"].size(), 1u);
  EXPECT_EQ(one["rows"][0]["job"], ids[0]);
  EXPECT_EQ(one["total"], 2);
  EXPECT_EQ(one["start"], 0);
  EXPECT_FALSE(one.contains("prev"));
  Json two = CallJson("GET", "/api/v1/study/in-process/rows?limit=1&after=" +
                                 one["next"].get<std::string>(), kAdmin);
  ASSERT_EQ(two["rows"].size(), 1u);
  EXPECT_EQ(two["rows"][0], second);
  EXPECT_EQ(two["start"], 1);
  EXPECT_FALSE(two.contains("next"));
  EXPECT_EQ(CallJson("GET", "/api/v1/study/in-process/rows?limit=1&before=" +
                                two["prev"].get<std::string>(), kAdmin)["rows"],
            one["rows"]);
  EXPECT_EQ(CallJson("GET", "/api/v1/study/in-process/rows?limit=1&page=last", kAdmin)["rows"],
            two["rows"]);
  for (const char* bad : {"after=00", "before=zz", "limit=0", "limit=501", "page=middle",
                          "page=first&after=00"}) {
    CallJson("GET", std::string("/api/v1/study/in-process/rows?") + bad, kAdmin, "", 400);
  }
  EXPECT_NE(Call("GET", "/api/v1/study/in-process/rows?after=00", kAdmin)->body.find("'after'"),
            std::string::npos);
  Json fits = AwaitJson("GET", "/api/v1/study/in-process/fits", kAdmin);
  ASSERT_EQ(fits["compute"].size(), 1u) << fits.dump();
  // Both jobs ran the same compute: the better one alone is on the frontier, and only the
  // points fitted are sent.
  EXPECT_EQ(fits["compute"][0]["jobs"], 2);
  ASSERT_EQ(fits["compute"][0]["points"].size(), 1u);
  EXPECT_EQ(fits["compute"][0]["points"][0]["job"], ids[1]);
  EXPECT_EQ(fits["compute"][0]["fitted"], Json::array({0}));
  EXPECT_EQ(fits["compute"][0]["fit"]["status"], "too_few_points");
  // Kept: answered at once, in the same turn, without the fitter.
  EXPECT_EQ(CallJson("GET", "/api/v1/study/in-process/fits", kAdmin), fits);
  // A result reported again with another value: the points are made again from the rows.
  ASSERT_TRUE(store_->AddResults({{ids[1], storage::Evaluation::kFewShot, "digits", 5, 0,
                                   "accuracy", 0.9}}).ok());
  Json changed = CallJson("GET", "/api/v1/study/in-process", kAdmin);
  EXPECT_DOUBLE_EQ(changed["rows"][1]["average"].get<double>(), 0.81);
  expect_points_of_rows(changed);
}

// Kept fits are answered without reading the sweep: they are made again when one of its jobs
// finishes, or a result or a ledger entry of one of its jobs arrives, and only then; what
// happens to other sweeps, or to its jobs before they finish, leaves them kept.
TEST_F(CoordinatorTest, KeptFitsAreMadeAgainOnlyWhenTheSweepsFinishedWorkChanges) {
  auto submit = [&](const std::string& name, const std::string& subsets) {
    std::string yaml = kSweep;
    yaml.replace(yaml.find("in-process"), 10, name);
    yaml.replace(yaml.find("[256, 512]"), 10, subsets);
    std::vector<std::string> ids = CallJson("POST", "/api/v1/sweeps", kAdmin, yaml)["jobs"];
    return ids;
  };
  std::vector<std::string> ids = submit("marks", "[256, 512, 1024]");
  std::vector<std::string> other = submit("other", "[2048, 4096]");
  ASSERT_EQ(ids.size(), 3u);
  ASSERT_EQ(other.size(), 2u);
  auto add_attempt = [&](const std::string& id) {
    clock_.Advance(std::chrono::seconds(1));
    auto attempt = store_->AddAttempt(id, std::nullopt, "localhost:1");
    EXPECT_TRUE(attempt.ok()) << attempt.status().ToString();
    EXPECT_TRUE(store_->EndAttempt(id, *attempt, storage::AttemptOutcome::kSucceeded, 0).ok());
    return *attempt;
  };
  auto result = [&](const std::string& id, double accuracy) {
    return storage::ResultRecord{id, storage::Evaluation::kFewShot, "digits", 5, 0, "accuracy",
                                 accuracy};
  };
  auto finish = [&](const std::string& id, double accuracy) {
    int attempt = add_attempt(id);
    storage::LedgerEntry ledger{id, attempt, 2e15, 1e12, 256, "cpu", 7200, 7200};
    ASSERT_TRUE(store_->AddResultsAndLedger({result(id, accuracy)}, ledger).ok());
    ASSERT_TRUE(store_->SetJobState(id, JobState::kSucceeded).ok());
  };
  finish(ids[0], 0.6);
  finish(ids[1], 0.7);
  const std::string target = "/api/v1/study/marks/fits";
  auto made = [&] { return coordinator_->users().fits_made(); };
  Json fits = AwaitJson("GET", target, kAdmin);
  EXPECT_EQ(fits["compute"][0]["jobs"], 2) << fits.dump();
  EXPECT_EQ(made(), 1);
  EXPECT_EQ(CallJson("GET", target, kAdmin), fits);
  EXPECT_EQ(made(), 1);

  // Another sweep's job finishes, with its result and ledger; a job of this one is leased and
  // reprioritised: nothing the fits show.
  finish(other[0], 0.8);
  ASSERT_TRUE(store_->SetJobState(ids[2], JobState::kLeased).ok());
  ASSERT_TRUE(store_->SetJobPriority(ids[2], 5).ok());
  EXPECT_EQ(CallJson("GET", target, kAdmin), fits);
  EXPECT_EQ(made(), 1);

  // A result of a finished job is reported again with another value: made again.
  clock_.Advance(std::chrono::seconds(1));
  ASSERT_TRUE(store_->AddResults({result(ids[0], 0.65)}).ok());
  fits = AwaitJson("GET", target, kAdmin);
  EXPECT_EQ(made(), 2);
  // The last job's attempt ends and its ledger entry arrives: made again (the view's columns
  // and exaFLOPs follow results and ledgers whatever the state).
  int attempt = add_attempt(ids[2]);
  ASSERT_TRUE(store_->AddLedgerEntry({ids[2], attempt, 4e15, 1e12, 256, "cpu", 60, 60}).ok());
  fits = AwaitJson("GET", target, kAdmin);
  EXPECT_EQ(made(), 3);
  ASSERT_TRUE(store_->AddResults({result(ids[2], 0.75)}).ok());
  fits = AwaitJson("GET", target, kAdmin);
  EXPECT_EQ(made(), 4);
  EXPECT_EQ(fits["compute"][0]["jobs"], 2) << "not finished: not fitted";
  // It finishes: made again, now with its point.
  clock_.Advance(std::chrono::seconds(1));
  ASSERT_TRUE(store_->SetJobState(ids[2], JobState::kSucceeded).ok());
  fits = AwaitJson("GET", target, kAdmin);
  EXPECT_EQ(made(), 5);
  EXPECT_EQ(fits["compute"][0]["jobs"], 3) << fits.dump();
  // And kept again, while the other sweep's second job finishes.
  finish(other[1], 0.9);
  EXPECT_EQ(CallJson("GET", target, kAdmin), fits);
  EXPECT_EQ(CallJson("GET", target + "?column=average", kAdmin), fits);
  EXPECT_EQ(made(), 5);
}

TEST_F(CoordinatorTest, HostsThatDoNotShareTheRunsFolderAreNotSpanned) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, TwoRankSweep("any"));
  std::string a = IssueAgent("host-a"), b = IssueAgent("host-b");
  Register("host-a", a);
  Register("host-b", b, Json::array(), 1, /*sees_runs=*/false);
  auto held_a = Send("POST", "/api/v1/agents/host-a/poll", a, R"({"running": []})");
  auto held_b = Send("POST", "/api/v1/agents/host-b/poll", b, R"({"running": []})");
  EXPECT_FALSE(*held_a || *held_b) << "nothing to launch: both polls are held";
  Register("host-b", b);  // now it sees the folder: the gang is placed over both
  io_.poll();
  ASSERT_TRUE(*held_a && *held_b);
  Expected<protocol::PollReply> to_a = protocol::Decode<protocol::PollReply>((*held_a)->body);
  ASSERT_TRUE(to_a.ok());
  ASSERT_EQ(to_a->launch.size(), 1u) << (*held_a)->body;
  EXPECT_EQ(protocol::HostsString(to_a->launch[0].hosts), "host-a:1,host-b:1");
}

// Metric posts that arrive together share one commit: N posts handed to the server before its
// loop turns are written in one transaction, each answered only after it, every point stored
// once; a post invalid on its own is refused alone and does not spoil the others.
TEST_F(CoordinatorTest, MetricPostsThatArriveTogetherShareOneCommit) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, kSweep);
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent);
  protocol::PollReply reply = Poll("host-a", agent, Json::array());
  ASSERT_EQ(reply.launch.size(), 1u);
  const protocol::LaunchEntry& launch = reply.launch[0];
  std::string target = Prefix(launch) + "/metrics", token = "Bearer " + ReportToken(launch);

  constexpr int kPosts = 20;
  std::vector<std::optional<HttpResponse>> answers(kPosts + 1);
  auto send = [&](int i, const std::string& body) {
    gate_->Handle("POST", target, token, body,
                  [&answers, i](HttpResponse response) { answers[i] = std::move(response); });
  };
  int64_t commits_before = coordinator_->reports().metric_commits();
  for (int i = 0; i < kPosts; ++i) {
    Json points = Json::array();
    for (int step = 0; step < 10; ++step) {
      points.push_back({{"step", i * 10 + step}, {"name", "loss"}, {"value", 1.0}});
    }
    send(i, Json{{"points", points}}.dump());
  }
  for (const auto& answer : answers) EXPECT_FALSE(answer) << "answered before its commit";
  // Invalid on its own (a point without a name): refused alone, at once.
  send(kPosts, R"({"points": [{"step": 1, "name": "", "value": 1}]})");
  Turn();
  for (int i = 0; i < kPosts; ++i) {
    ASSERT_TRUE(answers[i]) << "post " << i << " never answered";
    EXPECT_EQ(answers[i]->status, 200) << answers[i]->body;
  }
  ASSERT_TRUE(answers[kPosts]);
  EXPECT_EQ(answers[kPosts]->status, 400) << answers[kPosts]->body;
  EXPECT_EQ(coordinator_->reports().metric_commits() - commits_before, 1);
  EXPECT_EQ(*store_->CountMetrics(launch.job), kPosts * 10);
}

// The metric writer answers a post only once its points are committed: at the moment each
// acknowledgement is delivered, another connection to the database already reads its points.
TEST_F(CoordinatorTest, AMetricPostIsAcknowledgedOnlyAfterItsCommit) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, kSweep);
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent);
  protocol::PollReply reply = Poll("host-a", agent, Json::array());
  ASSERT_EQ(reply.launch.size(), 1u);
  const protocol::LaunchEntry& launch = reply.launch[0];
  std::string target = Prefix(launch) + "/metrics", token = "Bearer " + ReportToken(launch);

  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/vitscale.db").c_str(), &reader), SQLITE_OK);
  auto committed_steps = [&] {
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(reader, "SELECT count(*) FROM metrics WHERE job_id = ? AND name = 'loss'",
                       -1, &stmt, nullptr);
    sqlite3_bind_text(stmt, 1, launch.job.c_str(), -1, SQLITE_TRANSIENT);
    int64_t count = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
    sqlite3_finalize(stmt);
    return count;
  };
  constexpr int kRounds = 5, kPosts = 4;
  std::vector<std::pair<int, int64_t>> seen;  // (status, points committed when it was answered)
  for (int round = 0; round < kRounds; ++round) {
    for (int i = 0; i < kPosts; ++i) {
      int step = round * kPosts + i;
      Json body = {{"points", {{{"step", step}, {"name", "loss"}, {"value", 1.0}}}}};
      gate_->Handle("POST", target, token, body.dump(), [&](HttpResponse response) {
        seen.emplace_back(response.status, committed_steps());
      });
    }
    Turn();
    ASSERT_EQ(seen.size(), static_cast<size_t>((round + 1) * kPosts)) << "posts left unanswered";
    for (int i = 0; i < kPosts; ++i) {
      auto [status, committed] = seen[round * kPosts + i];
      EXPECT_EQ(status, 200);
      // Every post of this round and the rounds before is committed before any of them is
      // acknowledged.
      EXPECT_EQ(committed, (round + 1) * kPosts) << "acknowledged before its commit";
    }
  }
  sqlite3_close(reader);
}

// The database's write lock is held by another process while a group is pending: every post of
// the group is refused (503) and none is stored; sent again after the lock goes, each is stored
// exactly once.
TEST_F(CoordinatorTest, AFailedGroupCommitRefusesEveryPostAndTheRetriesLandOnce) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, kSweep);
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent);
  protocol::PollReply reply = Poll("host-a", agent, Json::array());
  ASSERT_EQ(reply.launch.size(), 1u);
  const protocol::LaunchEntry& launch = reply.launch[0];
  std::string target = Prefix(launch) + "/metrics", token = "Bearer " + ReportToken(launch);

  constexpr int kPosts = 5;
  auto send_all = [&](std::vector<std::optional<HttpResponse>>* answers) {
    for (int i = 0; i < kPosts; ++i) {
      Json body = {{"points", {{{"step", i}, {"name", "loss"}, {"value", 1.0}},
                               {{"step", i}, {"name", "accuracy"}, {"value", 0.5}}}}};
      gate_->Handle("POST", target, token, body.dump(),
                    [answers, i](HttpResponse response) { (*answers)[i] = std::move(response); });
    }
    Turn();
  };
  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/vitscale.db").c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  std::vector<std::optional<HttpResponse>> refused(kPosts);
  send_all(&refused);
  for (const auto& answer : refused) {
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->status, 503) << answer->body;
  }
  ASSERT_EQ(sqlite3_exec(holder, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(holder);
  EXPECT_EQ(*store_->CountMetrics(launch.job), 0) << "a refused group stored points";

  std::vector<std::optional<HttpResponse>> stored(kPosts);
  send_all(&stored);
  for (const auto& answer : stored) {
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->status, 200) << answer->body;
  }
  send_all(&stored);  // a retry whose answer was lost: the copies are dropped
  EXPECT_EQ(*store_->CountMetrics(launch.job), kPosts * 2);
}

}  // namespace
}  // namespace vitscale::coordinator
