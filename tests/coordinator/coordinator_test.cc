// The coordinator in process: its real routes, credentials and store (a temp file), driven
// through the same RequestGate the HTTP server uses, with a FakeClock, so that leases run out
// and backoffs pass without a test waiting for them.
#include "coordinator/coordinator.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <optional>

#include "protocol/agent.h"

namespace vitscale::coordinator {
namespace {

using protocol::Json;

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
    io_.poll();
    return answer;
  }
  std::optional<HttpResponse> Call(const std::string& method, const std::string& target,
                                   const std::string& token, const std::string& body = "") {
    return *Send(method, target, token, body);
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
  void Register(const std::string& host, const std::string& token, Json running = Json::array()) {
    CallJson("POST", "/api/v1/agents/register", token,
             Json{{"host", host}, {"slots", 1}, {"gpus", 0}, {"running", running}}.dump());
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
  static Json Running(const protocol::LaunchEntry& launch) {
    return Json::array({{{"job", launch.job}, {"attempt", launch.attempt}}});
  }
  Json Job(const std::string& id) { return CallJson("GET", "/api/v1/jobs/" + id, kAdmin); }

  boost::asio::io_context io_;
  FakeClock clock_;
  std::string dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<RequestGate> gate_;
};

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
  EXPECT_EQ(Job(attempt1.job)["state"], "leased");
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
  CallJson("POST", Prefix(launch) + "/exit", agent,
           Json{{"agent", "host-a"}, {"outcome", "failed"}, {"exit_status", 1}}.dump());
  EXPECT_EQ(store_->GetJob(launch.job)->retries_left, 0);
  // The other job takes the slot; once it is done, the failed one still waits for its backoff.
  protocol::LaunchEntry other = Poll("host-a", agent, Json::array()).launch.at(0);
  ASSERT_NE(other.job, launch.job);
  CallJson("POST", Prefix(other) + "/exit", agent,
           Json{{"agent", "host-a"}, {"outcome", "succeeded"}, {"exit_status", 0}}.dump());
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

// A store that refuses a write (here: another process holds the write lock) leaves no trace:
// the launch is neither recorded nor sent, and the scheduler goes back to what the store holds;
// once the store writes again, the job is launched, numbered as if nothing had happened.
TEST_F(CoordinatorTest, AFailedStoreWriteSendsNothingAndTheSchedulerFollowsTheStore) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, kSweep);
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent);
  protocol::LaunchEntry launch = Poll("host-a", agent, Json::array()).launch.at(0);
  CallJson("POST", Prefix(launch) + "/exit", agent,
           Json{{"agent", "host-a"}, {"outcome", "failed"}, {"exit_status", 1}}.dump());
  protocol::LaunchEntry other = Poll("host-a", agent, Json::array()).launch.at(0);
  CallJson("POST", Prefix(other) + "/exit", agent,
           Json{{"agent", "host-a"}, {"outcome", "succeeded"}, {"exit_status", 0}}.dump());
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
  EXPECT_EQ(job["state"], "leased");
  ASSERT_EQ(job["attempts"].size(), 2u);
  EXPECT_EQ(job["attempts"][1]["number"], 2);
}

// A heartbeat whose start report cannot be stored is refused whole (503), and the job is
// reported started by the next heartbeat once the store writes again.
TEST_F(CoordinatorTest, AHeartbeatThatCannotBeStoredChangesNothing) {
  CallJson("POST", "/api/v1/sweeps", kAdmin, kSweep);
  std::string agent = IssueAgent("host-a");
  Register("host-a", agent);
  protocol::LaunchEntry launch = Poll("host-a", agent, Json::array()).launch.at(0);
  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/vitscale.db").c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  std::optional<HttpResponse> refused = Call("POST", "/api/v1/agents/host-a/poll", agent,
                                             Json{{"running", Running(launch)}}.dump());
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503) << refused->body;
  EXPECT_EQ(Job(launch.job)["state"], "leased");
  ASSERT_EQ(sqlite3_exec(holder, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(holder);
  Call("POST", "/api/v1/agents/host-a/poll", agent, Json{{"running", Running(launch)}}.dump());
  EXPECT_EQ(Job(launch.job)["state"], "running");
  EXPECT_EQ(Job(launch.job)["attempts"].size(), 1u);
}

}  // namespace
}  // namespace vitscale::coordinator
