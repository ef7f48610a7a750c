// `vitscale`'s coordinator commands end to end: the real vitscale-coordinator on 127.0.0.1 (port
// 0, a temp --state-dir) and the built `vitscale` binary run as a subprocess. Where a job must
// run, the test plays the agent through the agent API (register, poll, report the exit).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/http_client.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr int kExitOk = 0, kExitFailure = 1, kExitUsage = 2, kExitBadInput = 3, kExitNotFound = 4,
              kExitUnavailable = 5;

constexpr const char* kSweep = R"(name: cli-test
recipe: small-images
pretrain:
  dataset: fashion-mnist/0-4
  epochs: 1
  batch_size: 32
grid:
  model: [ViT-Mu/7]
  subset: [500, 1500]
resources:
  ranks: 1
  gpus_per_rank: 0
)";

std::string Slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Whether `text` shows up in the file at `path` within `timeout`.
bool WaitForText(const fs::path& path, const std::string& text, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (Slurp(path).find(text) == std::string::npos) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

struct Outcome {
  int status = -1;
  std::string out;
  std::string err;
};

// A child process with its output in files; killed if the test leaves it running.
class Child {
 public:
  Child() = default;
  Child(const std::string& command, const fs::path& out, const fs::path& err)
      : out_(out), err_(err) {
    pid_ = ::fork();
    if (pid_ == 0) {
      int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err_fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(out_fd, 1);
      ::dup2(err_fd, 2);
      // `exec`: the shell becomes the program, so signals and kills reach the program itself.
      std::string line = "exec " + command;
      ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  Child(Child&& other) noexcept { *this = std::move(other); }
  Child& operator=(Child&& other) noexcept {
    Kill();
    pid_ = other.pid_;
    out_ = other.out_;
    err_ = other.err_;
    other.pid_ = -1;
    return *this;
  }
  ~Child() { Kill(); }

  bool running() const { return pid_ > 0; }

  // Waits up to `timeout`; a child still running then is killed and reported as status -1.
  Outcome Wait(std::chrono::milliseconds timeout) {
    Outcome outcome;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int raw = 0;
    while (pid_ > 0) {
      pid_t done = ::waitpid(pid_, &raw, WNOHANG);
      if (done == pid_) {
        outcome.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
        pid_ = -1;
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        Kill();
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
    outcome.out = Slurp(out_);
    outcome.err = Slurp(err_);
    return outcome;
  }

  void Signal(int signal) {
    if (pid_ > 0) ::kill(pid_, signal);
  }

 private:
  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  pid_t pid_ = -1;
  fs::path out_, err_;
};

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("vitscale-cli-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    state_ = dir_ / "state";
    StartCoordinator("127.0.0.1:0");
    sweep_file_ = Write("cli-test.yaml", kSweep);
  }

  void TearDown() override {
    StopCoordinator();
    fs::remove_all(dir_);
  }

  void StartCoordinator(const std::string& listen) {
    fs::remove(state_ / "address");
    fs::create_directories(state_);
    coordinator_ = Child(Quote(COORDINATOR_BINARY) + " --state-dir " + Quote(state_.string()) +
                             " --listen " + listen + " --max-retries 0",
                         dir_ / "coordinator.out", dir_ / "coordinator.err");
    for (int i = 0; i < 200 && !fs::exists(state_ / "address"); ++i)
      std::this_thread::sleep_for(25ms);
    ASSERT_TRUE(fs::exists(state_ / "address")) << Slurp(dir_ / "coordinator.err");
    url_ = Slurp(state_ / "address");
    while (!url_.empty() && url_.back() == '\n') url_.pop_back();
    token_ = Slurp(state_ / "token");
    while (!token_.empty() && token_.back() == '\n') token_.pop_back();
  }

  void StopCoordinator() {
    coordinator_.Signal(SIGTERM);
    coordinator_.Wait(10s);
  }

  std::string Write(const std::string& name, const std::string& content) {
    fs::path path = dir_ / name;
    std::ofstream(path, std::ios::binary) << content;
    return path.string();
  }

  // The command line for `vitscale ARGS` with the coordinator and token in the environment.
  std::string Command(const std::string& args, const std::string& env = "") {
    std::string base = "VITSCALE_COORDINATOR=" + Quote(url_) +
                       " VITSCALE_TOKEN_FILE=" + Quote((state_ / "token").string());
    return "env -u VITSCALE_TOKEN " + base + " " + env + " " + Quote(VITSCALE_BINARY) + " " + args;
  }

  Outcome Vitscale(const std::string& args, const std::string& env = "") {
    return Child(Command(args, env), dir_ / "stdout", dir_ / "stderr").Wait(60s);
  }

  Child VitscaleInBackground(const std::string& args, const std::string& name) {
    return Child(Command(args), dir_ / (name + ".out"), dir_ / (name + ".err"));
  }

  json SubmitJson() {
    Outcome run = Vitscale("submit --json " + Quote(sweep_file_));
    EXPECT_EQ(run.status, kExitOk) << run.err;
    return json::parse(run.out);
  }

  // The agent's side of the API, played by the test with the credential that
  // `vitscale agents issue` prints.
  std::unique_ptr<vitscale::HttpClient> AgentClient() {
    Outcome issued = Vitscale("agents issue test-agent");
    EXPECT_EQ(issued.status, kExitOk) << issued.err;
    std::string token = issued.out;
    while (!token.empty() && token.back() == '\n') token.pop_back();
    EXPECT_EQ(token.size(), 64u) << issued.out;
    vitscale::HttpClientOptions options;
    options.base_url = url_;
    options.bearer_token = token;
    auto client = vitscale::HttpClient::Create(options);
    EXPECT_TRUE(client.ok());
    return std::move(*client);
  }

  // Registers an agent with `slots` slots and returns the launches of its first poll.
  std::vector<json> RegisterAndPoll(vitscale::HttpClient& agent, int slots, size_t want) {
    json body = {{"host", "test-agent"}, {"slots", slots}, {"gpus", 0}, {"running", json::array()}};
    auto registered = agent.PostJson("/api/v1/agents/register", body.dump());
    EXPECT_TRUE(registered.ok() && registered->status == 200)
        << (registered.ok() ? registered->body : registered.status().message());
    std::vector<json> launches;
    json running = json::array();
    for (int round = 0; round < 10 && launches.size() < want; ++round) {
      auto reply =
          agent.PostJson("/api/v1/agents/test-agent/poll", json{{"running", running}}.dump());
      if (!reply.ok() || reply->status != 200) {
        ADD_FAILURE() << (reply.ok() ? reply->body : reply.status().message());
        break;
      }
      const json answer = json::parse(reply->body);
      for (const json& launch : answer["launch"]) {
        launches.push_back(launch);
        running.push_back({{"job", launch["job"]}, {"attempt", launch["attempt"]}});
      }
    }
    return launches;
  }

  void ReportExit(vitscale::HttpClient& agent, const json& launch, const std::string& outcome) {
    json exit = {{"job", launch["job"]},
                 {"attempt", launch["attempt"]},
                 {"outcome", outcome},
                 {"exit_status", outcome == "succeeded" ? 0 : 78}};
    auto reply = agent.PostJson("/api/v1/agents/test-agent/exits",
                                json{{"exits", json::array({exit})}}.dump());
    ASSERT_TRUE(reply.ok()) << reply.status().message();
    ASSERT_EQ(reply->status, 200) << reply->body;
  }

  fs::path dir_, state_;
  std::string url_, token_, sweep_file_;
  Child coordinator_;
};

TEST_F(CliTest, SubmitTwiceAddsNothingTheSecondTime) {
  Outcome first = Vitscale("submit " + Quote(sweep_file_));
  ASSERT_EQ(first.status, kExitOk) << first.err;
  EXPECT_EQ(first.out, "sweep cli-test: 2 jobs added, 0 already known\n");

  json second = SubmitJson();
  EXPECT_EQ(second["sweep"], "cli-test");
  EXPECT_EQ(second["jobs_added"], 0);
  EXPECT_EQ(second["jobs_known"], 2);
  EXPECT_EQ(second["jobs"].size(), 2u);
}

TEST_F(CliTest, ListShowPriorityCancel) {
  json submitted = SubmitJson();
  ASSERT_EQ(submitted["jobs"].size(), 2u);
  std::string id = submitted["jobs"][0], other = submitted["jobs"][1];

  Outcome list = Vitscale("list --sweep cli-test --state pending");
  ASSERT_EQ(list.status, kExitOk) << list.err;
  EXPECT_NE(list.out.find(id.substr(0, 12)), std::string::npos) << list.out;
  EXPECT_NE(list.out.find(other.substr(0, 12)), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("2 jobs"), std::string::npos) << list.out;

  Outcome page = Vitscale("list --json --sweep cli-test --limit 1 --sort subset --desc");
  ASSERT_EQ(page.status, kExitOk) << page.err;
  json paged = json::parse(page.out);
  EXPECT_EQ(paged["total"], 2);
  ASSERT_EQ(paged["jobs"].size(), 1u);
  EXPECT_EQ(paged["jobs"][0]["subset_size"], 1500);
  Outcome all = Vitscale("list --json --all --model ViT-Mu/7");
  ASSERT_EQ(all.status, kExitOk) << all.err;
  EXPECT_EQ(json::parse(all.out)["jobs"].size(), 2u);
  Outcome text_page = Vitscale("list --limit 1");
  EXPECT_NE(text_page.out.find("1 of 2 jobs shown"), std::string::npos) << text_page.out;
  size_t next_at = text_page.out.find("next page: --after ");
  ASSERT_NE(next_at, std::string::npos) << text_page.out;
  std::string cursor = text_page.out.substr(next_at + 19);
  cursor = cursor.substr(0, cursor.find('\n'));
  Outcome second_page = Vitscale("list --limit 1 --after " + cursor);
  ASSERT_EQ(second_page.status, kExitOk) << second_page.err;
  EXPECT_NE(second_page.out.find("previous page: --before "), std::string::npos) << second_page.out;
  EXPECT_EQ(second_page.out.find("next page"), std::string::npos) << second_page.out;
  std::string first_id = json::parse(Vitscale("list --json --limit 1").out)["jobs"][0]["id"];
  std::string last_id = json::parse(Vitscale("list --json --limit 1 --last").out)["jobs"][0]["id"];
  EXPECT_NE(first_id, last_id);
  EXPECT_NE(second_page.out.find(last_id.substr(0, 12)), std::string::npos) << second_page.out;
  // A cursor is checked: one made for other filters is refused, never read as a position.
  EXPECT_EQ(Vitscale("list --limit 1 --sort model --after " + cursor).status, kExitBadInput);
  EXPECT_EQ(Vitscale("list --state pendng").status, kExitBadInput);
  EXPECT_EQ(Vitscale("list --sweeep cli-test").status, kExitUsage);

  Outcome show = Vitscale("show " + id.substr(0, 8));
  ASSERT_EQ(show.status, kExitOk) << show.err;
  EXPECT_NE(show.out.find("job " + id), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("ViT-Mu/7"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("attempts: 0"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("config:"), std::string::npos) << show.out;

  Outcome priority = Vitscale("priority " + id.substr(0, 10) + " -5 --json");
  ASSERT_EQ(priority.status, kExitOk) << priority.err;
  EXPECT_EQ(json::parse(priority.out)["priority"], -5);
  Outcome shown = Vitscale("show --json " + id);
  ASSERT_EQ(shown.status, kExitOk) << shown.err;
  EXPECT_EQ(json::parse(shown.out)["priority"], -5);
  EXPECT_EQ(Vitscale("priority " + id + " high").status, kExitUsage);

  Outcome cancel = Vitscale("cancel " + id);
  ASSERT_EQ(cancel.status, kExitOk) << cancel.err;
  EXPECT_EQ(cancel.out, "job " + id.substr(0, 12) + ": cancelled, priority -5\n");
  Outcome again = Vitscale("cancel " + id);
  EXPECT_EQ(again.status, kExitFailure);
  EXPECT_NE(again.err.find("already cancelled"), std::string::npos) << again.err;

  Outcome missing = Vitscale("show 0123456789abcdef");
  EXPECT_EQ(missing.status, kExitNotFound) << missing.err;
  EXPECT_EQ(Vitscale("show").status, kExitUsage);
}

TEST_F(CliTest, ExportFromTheCoordinator) {
  SubmitJson();
  Outcome csv = Vitscale("export --sweep cli-test --format csv");
  ASSERT_EQ(csv.status, kExitOk) << csv.err;
  EXPECT_NE(csv.out.find("ViT-Mu/7"), std::string::npos) << csv.out;
  EXPECT_NE(csv.out.find(','), std::string::npos) << csv.out;
  Outcome markdown = Vitscale("export --sweep cli-test");
  ASSERT_EQ(markdown.status, kExitOk) << markdown.err;
  EXPECT_NE(markdown.out.find('|'), std::string::npos) << markdown.out;
  Outcome study = Vitscale("export --sweep cli-test --json");
  ASSERT_EQ(study.status, kExitOk) << study.err;
  EXPECT_EQ(json::parse(study.out)["rows"].size(), 2u);

  EXPECT_EQ(Vitscale("export --sweep nope").status, kExitNotFound);
  Outcome format = Vitscale("export --sweep cli-test --format latx");
  EXPECT_EQ(format.status, kExitUsage);
  EXPECT_NE(format.err.find("did you mean 'latex'"), std::string::npos) << format.err;
  EXPECT_EQ(Vitscale("export --format csv").status, kExitUsage);
}

TEST_F(CliTest, SimulateThePaperStudyOnThreeClusterSizes) {
  std::string study = Quote(std::string(VITSCALE_SOURCE_DIR) + "/experiments/paper/scaling-study.yaml");
  Outcome run = Vitscale("sweep simulate " + study + " --hosts 64x8:H200 --json");
  ASSERT_EQ(run.status, kExitOk) << run.err;
  json plans = json::parse(run.out)["plans"];
  ASSERT_EQ(plans.size(), 3u);
  std::vector<int> hosts;
  for (const json& plan : plans) {
    hosts.push_back(plan["hosts"]);
    EXPECT_GT(plan["makespan_seconds"].get<double>(), 0);
    EXPECT_GE(plan["makespan_seconds"].get<double>(),
              plan["lower_bound_seconds"].get<double>() - 1e-6);
    EXPECT_GT(plan["utilisation"].get<double>(), 0);
    EXPECT_LE(plan["utilisation"].get<double>(), 1 + 1e-9);
    // Nothing is measured: every rate is an estimate, and says so.
    EXPECT_FALSE(plan["estimated"].empty());
  }
  EXPECT_EQ(hosts, (std::vector<int>{64, 32, 128}));
  EXPECT_EQ(plans[0]["jobs"].size(), 18u);
  EXPECT_GE(plans[0]["attempts"].size(), 18u);
  for (const json& job : plans[0]["jobs"]) EXPECT_TRUE(job["estimate"].get<bool>());
  // Half the hosts never finish sooner.
  EXPECT_GE(plans[1]["makespan_seconds"].get<double>(), plans[0]["makespan_seconds"].get<double>());

  Outcome text = Vitscale("sweep simulate " + study + " --hosts 64x8:H200");
  ASSERT_EQ(text.status, kExitOk) << text.err;
  for (const char* part : {"makespan", "device-days", "utilisation", "critical jobs",
                           "what the cluster size changes", "estimated rates", "nominal peak"}) {
    EXPECT_NE(text.out.find(part), std::string::npos) << part << "\n" << text.out;
  }
}

TEST_F(CliTest, SimulateRefusesAClusterThatCannotRunAJob) {
  std::string study = Quote(std::string(VITSCALE_SOURCE_DIR) + "/experiments/paper/scaling-study.yaml");
  Outcome small = Vitscale("sweep simulate " + study + " --hosts 1x4:H200");
  EXPECT_EQ(small.status, kExitBadInput) << small.err;
  EXPECT_NE(small.err.find("needs 8 ranks x 1 GPU = 8 GPUs"), std::string::npos) << small.err;
  EXPECT_TRUE(small.out.empty()) << small.out;
  Outcome spec = Vitscale("sweep simulate " + study + " --hosts 64:H200");
  EXPECT_EQ(spec.status, kExitNotFound) << spec.err;
  EXPECT_NE(spec.err.find("HOSTSxDEVICES:KIND"), std::string::npos) << spec.err;
  Outcome missing = Vitscale("sweep simulate " + study);
  EXPECT_EQ(missing.status, kExitUsage);
  Outcome kind = Vitscale("sweep simulate " + study + " --hosts 8x8:TPUv9");
  EXPECT_EQ(kind.status, kExitNotFound) << kind.err;
  EXPECT_NE(kind.err.find("peak_tflops"), std::string::npos) << kind.err;
}

TEST_F(CliTest, ThroughputImportListAndFitsExport) {
  Outcome empty = Vitscale("throughput --json");
  ASSERT_EQ(empty.status, kExitOk) << empty.err;
  EXPECT_TRUE(json::parse(empty.out)["rows"].empty());
  std::string rows = Write("bench.json", R"({"rows": [{"model": "ViT-B/16", "device_kind": "H200",
      "batch_size": 4096, "images_per_second": 1000, "overhead_seconds": 30}]})");
  Outcome imported = Vitscale("throughput import " + Quote(rows));
  ASSERT_EQ(imported.status, kExitOk) << imported.err;
  Outcome listed = Vitscale("throughput");
  ASSERT_EQ(listed.status, kExitOk) << listed.err;
  EXPECT_NE(listed.out.find("ViT-B/16"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("benchmark: "), std::string::npos) << listed.out;
  std::string bad = Write("bad.json", R"([{"model": "ViT-B/16", "device_kind": "H200",
      "batch_size": 4096, "images_per_second": -1}])");
  Outcome refused = Vitscale("throughput import " + Quote(bad));
  EXPECT_EQ(refused.status, kExitBadInput) << refused.err;
  EXPECT_NE(refused.err.find("rows[0].images_per_second"), std::string::npos) << refused.err;

  // The imported row prices ViT-B/16 on H200 as measured; the other models are estimated from
  // its FLOP/s, not from a nominal peak.
  Outcome listed_json = Vitscale("throughput --json");
  std::string table = Write("table.json", listed_json.out);
  std::string study = Quote(std::string(VITSCALE_SOURCE_DIR) + "/experiments/paper/scaling-study.yaml");
  Outcome plan = Vitscale("sweep simulate " + study + " --hosts 16x8:H200 --compare 1 --json --throughput " + Quote(table));
  ASSERT_EQ(plan.status, kExitOk) << plan.err;
  json planned = json::parse(plan.out)["plans"][0];
  for (const json& job : planned["jobs"]) {
    std::string basis = job["basis"];
    EXPECT_EQ(basis.find("nominal peak"), std::string::npos) << basis;
  }

  SubmitJson();
  Outcome fits = Vitscale("export --sweep cli-test --fits --format csv");
  ASSERT_EQ(fits.status, kExitOk) << fits.err;
  EXPECT_EQ(fits.out.rfind("figure,group,points,a,b,c,d", 0), 0u) << fits.out;
  Outcome column = Vitscale("export --sweep cli-test --fits --column nope");
  EXPECT_EQ(column.status, kExitBadInput) << column.err;
  EXPECT_EQ(Vitscale("export --sweep cli-test --column average").status, kExitUsage);
}

TEST_F(CliTest, InvalidSweepIsBadInputWithLineAndColumn) {
  std::string bad = Write("bad.yaml", std::string(kSweep).replace(
                                          std::string(kSweep).find("ViT-Mu/7"), 8, "ViT-Mu/77"));
  Outcome run = Vitscale("submit " + Quote(bad));
  EXPECT_EQ(run.status, kExitBadInput) << run.err;
  EXPECT_TRUE(std::regex_search(run.err, std::regex("bad\\.yaml:8:[0-9]+"))) << run.err;
  EXPECT_TRUE(run.out.empty()) << run.out;

  Outcome missing = Vitscale("submit " + Quote((dir_ / "absent.yaml").string()));
  EXPECT_EQ(missing.status, kExitNotFound) << missing.err;
}

TEST_F(CliTest, WrongTokenSaysWhereTheTokenIs) {
  std::string wrong = Write("wrong-token", "not-the-token-at-all\n");
  Outcome run = Vitscale("submit --token-file " + Quote(wrong) + " " + Quote(sweep_file_));
  EXPECT_NE(run.status, kExitOk);
  EXPECT_NE(run.err.find("401"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("<state dir>/token"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("--token-file " + wrong), std::string::npos) << run.err;

  Outcome by_env = Vitscale("list", "VITSCALE_TOKEN_FILE= VITSCALE_TOKEN=wrong");
  EXPECT_EQ(by_env.status, kExitFailure);
  EXPECT_NE(by_env.err.find("refused the token from VITSCALE_TOKEN"), std::string::npos)
      << by_env.err;

  Outcome absent = Vitscale("list --token-file " + Quote((dir_ / "nope").string()));
  EXPECT_EQ(absent.status, kExitNotFound);
  EXPECT_NE(absent.err.find("does not exist"), std::string::npos) << absent.err;
}

TEST_F(CliTest, CoordinatorDownIsUnavailable) {
  StopCoordinator();
  for (const std::string& args :
       std::vector<std::string>{"list", "submit " + Quote(sweep_file_), "show 0123456789ab",
                                "watch --sweep cli-test", "export --sweep cli-test"}) {
    Outcome run = Vitscale(args);
    EXPECT_EQ(run.status, kExitUnavailable) << args << ": " << run.err;
    EXPECT_NE(run.err.find("cannot reach the coordinator at " + url_), std::string::npos)
        << run.err;
  }
  EXPECT_EQ(Vitscale("list --coordinator ftp://x").status, kExitBadInput);
}

TEST_F(CliTest, WatchEndsWhenTheAgentFinishesEveryJob) {
  SubmitJson();
  Child watch = VitscaleInBackground("watch --sweep cli-test --interval 0.1", "watch");
  auto agent = AgentClient();
  std::vector<json> launches = RegisterAndPoll(*agent, 4, 2);
  ASSERT_EQ(launches.size(), 2u);

  // Running jobs show as plain lines (stdout is a file here); the test's log and `logs` agree.
  fs::path log = state_ / "runs" / launches[0]["job"].get<std::string>() / "attempt-1.log";
  fs::create_directories(log.parent_path());
  std::ofstream(log) << "step 1 loss 2.3\n";
  Child follow =
      VitscaleInBackground("logs --follow " + launches[0]["job"].get<std::string>(), "follow");
  std::this_thread::sleep_for(1500ms);
  std::ofstream(log, std::ios::app) << "step 2 loss 1.9\n";
  std::this_thread::sleep_for(1500ms);
  Outcome logs = Vitscale("logs " + launches[0]["job"].get<std::string>().substr(0, 8));
  EXPECT_EQ(logs.status, kExitOk) << logs.err;
  EXPECT_EQ(logs.out, "step 1 loss 2.3\nstep 2 loss 1.9\n");

  // Half of the first job's images: its bar shows 50%.
  std::string job = launches[0]["job"];
  int64_t subset = launches[0]["spec"]["job"]["subset"];
  json points = {{"points", {{{"step", 5}, {"name", "images_seen"}, {"value", subset / 2}}}}};
  // The trainer reports with its attempt's own token, which the launch's spec carries.
  vitscale::HttpClientOptions trainer_options;
  trainer_options.base_url = url_;
  trainer_options.bearer_token = launches[0]["spec"]["run"]["report_token"];
  auto trainer = vitscale::HttpClient::Create(trainer_options);
  ASSERT_TRUE(trainer.ok());
  auto posted =
      (*trainer)->PostJson("/api/v1/jobs/" + job + "/attempts/1/metrics", points.dump());
  ASSERT_TRUE(posted.ok() && posted->status == 200);
  EXPECT_TRUE(WaitForText(dir_ / "watch.out", "50% leased", 20s)) << Slurp(dir_ / "watch.out");

  for (const json& launch : launches) ReportExit(*agent, launch, "succeeded");
  Outcome watched = watch.Wait(30s);
  EXPECT_EQ(watched.status, kExitOk) << watched.err << watched.out;
  EXPECT_NE(watched.out.find(job.substr(0, 12) + " ViT-Mu/7"), std::string::npos) << watched.out;
  EXPECT_NE(watched.out.find("[##########..........]  50% leased"), std::string::npos)
      << watched.out;
  EXPECT_NE(watched.out.find("sweep cli-test: all 2 jobs succeeded"), std::string::npos)
      << watched.out;

  Outcome followed = follow.Wait(30s);
  EXPECT_EQ(followed.status, kExitOk) << followed.err;
  EXPECT_EQ(followed.out, "step 1 loss 2.3\nstep 2 loss 1.9\n");

  Outcome show = Vitscale("show " + launches[0]["job"].get<std::string>());
  EXPECT_NE(show.out.find("attempts: 1"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("succeeded"), std::string::npos) << show.out;
  EXPECT_EQ(Vitscale("watch " + launches[1]["job"].get<std::string>()).status, kExitOk);
}

TEST_F(CliTest, ListShowAndWatchNameARunningJobsPhase) {
  SubmitJson();
  auto agent = AgentClient();
  std::vector<json> launches = RegisterAndPoll(*agent, 1, 1);
  ASSERT_EQ(launches.size(), 1u);
  const json& launch = launches[0];
  std::string job = launch["job"];
  json running = {{"running", {{{"job", job}, {"attempt", launch["attempt"]}}}}};
  auto polled = agent->PostJson("/api/v1/agents/test-agent/poll", running.dump());
  ASSERT_TRUE(polled.ok() && polled->status == 200);
  vitscale::HttpClientOptions trainer_options;
  trainer_options.base_url = url_;
  trainer_options.bearer_token = launch["spec"]["run"]["report_token"];
  auto trainer = vitscale::HttpClient::Create(trainer_options);
  ASSERT_TRUE(trainer.ok());
  auto report = [&](const json& phase) {
    auto posted = (*trainer)->PostJson("/api/v1/jobs/" + job + "/attempts/1/phase", phase.dump());
    ASSERT_TRUE(posted.ok() && posted->status == 200)
        << (posted.ok() ? posted->body : posted.status().message());
  };
  report({{"phase", "few-shot"}, {"index", 2}, {"count", 6}, {"detail", "digits seed 1"}});
  // The coordinator writes the start the poll reported about a second later.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (Vitscale("list --state running").out.find(job.substr(0, 12)) == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }

  Outcome list = Vitscale("list --state running");
  EXPECT_EQ(list.status, kExitOk) << list.err;
  EXPECT_NE(list.out.find("PHASE"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("few-shot 2/6 (digits seed 1)"), std::string::npos) << list.out;
  Outcome show = Vitscale("show " + job.substr(0, 12));
  EXPECT_NE(show.out.find("phase     few-shot 2/6 (digits seed 1)"), std::string::npos) << show.out;

  // watch prints a line as the job enters each phase (stdout is a file here).
  Child watch = VitscaleInBackground("watch " + job + " --interval 0.1", "watch");
  EXPECT_TRUE(WaitForText(dir_ / "watch.out", "running: few-shot 2/6 (digits seed 1)", 20s))
      << Slurp(dir_ / "watch.out");
  report({{"phase", "inspection"}, {"index", 1}, {"count", 4}, {"detail", "filters"}});
  EXPECT_TRUE(WaitForText(dir_ / "watch.out", "running: inspection 1/4 (filters)", 20s))
      << Slurp(dir_ / "watch.out");
  ReportExit(*agent, launch, "succeeded");
  Outcome watched = watch.Wait(30s);
  EXPECT_EQ(watched.status, kExitOk) << watched.err << watched.out;
  // A finished job has no phase.
  Outcome after = Vitscale("show " + job.substr(0, 12));
  EXPECT_EQ(after.out.find("phase "), std::string::npos) << after.out;
}

TEST_F(CliTest, PreemptSignalsTheAgentAndRequeues) {
  std::string pending = SubmitJson()["jobs"][0];
  Outcome refused = Vitscale("preempt " + pending);
  EXPECT_EQ(refused.status, kExitFailure);
  EXPECT_NE(refused.err.find("pending"), std::string::npos) << refused.err;

  auto agent = AgentClient();
  std::vector<json> launches = RegisterAndPoll(*agent, 4, 2);
  ASSERT_EQ(launches.size(), 2u);
  std::string job = launches[0]["job"];
  Outcome preempt = Vitscale("preempt --json " + job.substr(0, 8));
  ASSERT_EQ(preempt.status, kExitOk) << preempt.err;
  EXPECT_EQ(json::parse(preempt.out)["state"], "preempted");

  json running = json::array();
  for (const json& launch : launches) {
    running.push_back({{"job", launch["job"]}, {"attempt", launch["attempt"]}});
  }
  auto poll = agent->PostJson("/api/v1/agents/test-agent/poll", json{{"running", running}}.dump());
  ASSERT_TRUE(poll.ok() && poll->status == 200);
  const json signals = json::parse(poll->body)["signal"];
  ASSERT_EQ(signals.size(), 1u) << poll->body;
  EXPECT_EQ(signals[0]["action"], "preempt");
  ReportExit(*agent, launches[0], "preempted");

  Outcome show = Vitscale("show " + job);
  EXPECT_NE(show.out.find("(1 preempted, 0 lost"), std::string::npos) << show.out;
  Outcome state = Vitscale("show --json " + job);
  std::string now = json::parse(state.out)["state"];
  EXPECT_TRUE(now == "pending" || now == "leased") << now;
}

TEST_F(CliTest, WatchSurvivesACoordinatorRestartAndReportsAFailure) {
  SubmitJson();
  Child watch = VitscaleInBackground("watch --interval 0.1", "watch");
  auto agent = AgentClient();
  std::vector<json> launches = RegisterAndPoll(*agent, 4, 2);
  ASSERT_EQ(launches.size(), 2u);
  std::this_thread::sleep_for(500ms);

  // Stop it and start it again on the same port: watch waits, then carries on.
  std::string port = url_.substr(url_.rfind(':') + 1);
  StopCoordinator();
  std::this_thread::sleep_for(1s);
  ASSERT_TRUE(watch.running());
  StartCoordinator("127.0.0.1:" + port);
  agent = AgentClient();
  // The restarted coordinator learns which jobs the agent still runs from its registration.
  json running = json::array();
  for (const json& launch : launches) {
    running.push_back({{"job", launch["job"]}, {"attempt", launch["attempt"]}});
  }
  auto registered = agent->PostJson(
      "/api/v1/agents/register",
      json{{"host", "test-agent"}, {"slots", 4}, {"gpus", 0}, {"running", running}}.dump());
  ASSERT_TRUE(registered.ok() && registered->status == 200);

  ReportExit(*agent, launches[0], "succeeded");
  ReportExit(*agent, launches[1], "config_error");
  Outcome watched = watch.Wait(30s);
  EXPECT_EQ(watched.status, kExitFailure) << watched.err << watched.out;
  EXPECT_NE(watched.err.find("cannot reach the coordinator"), std::string::npos) << watched.err;
  EXPECT_NE(watched.err.find("the coordinator is back"), std::string::npos) << watched.err;
  EXPECT_NE(watched.out.find("1 succeeded, 1 failed"), std::string::npos) << watched.out;
  EXPECT_NE(watched.out.find(launches[1]["job"].get<std::string>().substr(0, 12)),
            std::string::npos)
      << watched.out;
}

}  // namespace
