// Helpers for the tests that run the real daemons on loopback: a temp directory, child
// processes that are killed when the test ends, a coordinator started on a free port, and a
// way to wait for a condition without fixed sleeps.
//
// Binaries come from the build: VITSCALE_BIN_DIR (a compile definition) holds
// vitscale-coordinator, vitscale-agent and, once built, vitscale-train. The environment
// variable VITSCALE_TRAIN overrides the trainer's path.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/files.h"
#include "common/http_client.h"

namespace vitscale::testing {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

inline std::string BinPath(const std::string& name) {
  return std::string(VITSCALE_BIN_DIR) + "/" + name;
}

// The trainer the agents run: $VITSCALE_TRAIN, else vitscale-train in the build's bin folder;
// "" when neither exists.
inline std::string TrainerPath() {
  if (const char* env = std::getenv("VITSCALE_TRAIN"); env && *env) return env;
  std::string built = BinPath("vitscale-train");
  return std::filesystem::exists(built) ? built : "";
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "vitscale-e2e-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) ? pattern : "";
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty() && !std::getenv("VITSCALE_KEEP_TEST_DIRS")) {
      std::filesystem::remove_all(path_, ignored);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A file's content, or "" when it cannot be read (a log not written yet).
inline std::string Slurp(const std::string& path) {
  Expected<std::string> text = ReadFile(path);
  return text.ok() ? *text : "";
}

// The first column of each row a query gives on the database at `db_path`, as text ("NULL" for
// NULL), joined by ","; read directly, as after a crash, on a read-only connection of its own.
// A database that cannot be opened or a query that cannot be prepared gives a line saying so.
inline std::string DbRows(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return "cannot open " + db_path;
  }
  sqlite3_stmt* stmt = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    out = std::string("cannot prepare: ") + sqlite3_errmsg(db);
  }
  while (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    if (!out.empty()) out += ",";
    out += text ? reinterpret_cast<const char*>(text) : "NULL";
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

// Polls `done` every 50 ms until it holds or `timeout` passes; true if it held.
inline bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

// A child process with stdout and stderr in `log`. The destructor SIGKILLs it if it still runs.
class Process {
 public:
  Process(std::vector<std::string> argv, const std::string& log) : log_(log) {
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::close(fd);
      }
      std::vector<char*> args;
      for (std::string& arg : argv) args.push_back(arg.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Process() {
    if (Running()) {
      Signal(SIGKILL);
      Wait(std::chrono::seconds(10));
    }
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& log() const { return log_; }
  void Signal(int signal) {
    if (pid_ > 0 && !exited_) ::kill(pid_, signal);
  }
  bool Running() {
    if (pid_ <= 0 || exited_) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      status_ = status;
    }
    return !exited_;
  }
  // The wait status, or -1 if it still runs after `timeout`.
  int Wait(std::chrono::milliseconds timeout) {
    WaitFor([this] { return !Running(); }, timeout);
    return exited_ ? status_ : -1;
  }

 private:
  std::string log_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
};

// vitscale-coordinator on 127.0.0.1 with its state in `state_dir`. Start() waits until it
// writes DIR/address; restarting with the same state dir reuses the port it had.
class Coordinator {
 public:
  Coordinator(std::string state_dir, std::vector<std::string> flags)
      : state_dir_(std::move(state_dir)), flags_(std::move(flags)) {}

  ::testing::AssertionResult Start() {
    std::string address_file = state_dir_ + "/address";
    std::error_code ignored;
    std::filesystem::remove(address_file, ignored);
    std::vector<std::string> argv = {BinPath("vitscale-coordinator"), "--state-dir", state_dir_,
                                     "--listen", "127.0.0.1:" + std::to_string(port_)};
    argv.insert(argv.end(), flags_.begin(), flags_.end());
    std::filesystem::create_directories(state_dir_, ignored);
    process_ = std::make_unique<Process>(argv, log_.empty() ? state_dir_ + "/coordinator.log" : log_);
    bool up = WaitFor([&] { return std::filesystem::exists(address_file) || !process_->Running(); },
                      std::chrono::seconds(20));
    if (!up || !process_->Running()) {
      return ::testing::AssertionFailure() << "the coordinator did not start; its log:\n"
                                           << Slurp(process_->log());
    }
    url_ = Slurp(address_file);
    while (!url_.empty() && url_.back() == '\n') url_.pop_back();
    port_ = std::stoi(url_.substr(url_.rfind(':') + 1));
    token_ = Slurp(state_dir_ + "/token");
    while (!token_.empty() && token_.back() == '\n') token_.pop_back();
    return ::testing::AssertionSuccess();
  }
  // Where its stdout and stderr go (default DIR/coordinator.log); for tests whose state dir
  // fills up or turns read-only.
  void SetLog(const std::string& path) { log_ = path; }
  void Kill() {
    process_->Signal(SIGKILL);
    process_->Wait(std::chrono::seconds(10));
  }

  const std::string& url() const { return url_; }
  const std::string& token() const { return token_; }
  int port() const { return port_; }
  std::string token_file() const { return state_dir_ + "/token"; }
  Process& process() { return *process_; }

  std::string runs_dir() const { return state_dir_ + "/runs"; }

  // A client with the admin token (`with_token`) or without any.
  std::unique_ptr<HttpClient> Client(bool with_token = true) const {
    return ClientWithToken(with_token ? token_ : "");
  }
  std::unique_ptr<HttpClient> ClientWithToken(const std::string& token) const {
    HttpClientOptions options;
    options.base_url = url_;
    options.bearer_token = token;
    options.read_timeout = std::chrono::seconds(30);
    auto client = HttpClient::Create(options);
    return client.ok() ? std::move(*client) : nullptr;
  }

  // A fresh agent credential for `host`, issued with the admin token as `vitscale agents issue`
  // does; "" (and a test failure) if the coordinator refuses.
  std::string IssueAgentToken(const std::string& host) const {
    auto admin = Client(true);
    Expected<HttpReply> reply =
        admin->PostJson("/api/v1/agents/credentials", nlohmann::json{{"host", host}}.dump());
    EXPECT_TRUE(reply.ok() && reply->status == 200)
        << (reply.ok() ? reply->body : reply.status().ToString());
    if (!reply.ok() || reply->status != 200) return "";
    return nlohmann::json::parse(reply->body, nullptr, false).value("token", "");
  }
  // The same, written to a file (mode 0600) for `vitscale-agent --token-file`.
  std::string AgentTokenFile(const std::string& host) const {
    std::string path = state_dir_ + "/../agent-" + host + ".token";
    EXPECT_TRUE(WriteFileAtomically(path, IssueAgentToken(host) + "\n", 0600).ok());
    return path;
  }

 private:
  std::string state_dir_;
  std::vector<std::string> flags_;
  std::string log_;
  int port_ = 0;
  std::string url_;
  std::string token_;
  std::unique_ptr<Process> process_;
};

// GET/POST helpers that fail the test on a transport error and parse JSON replies.
inline HttpReply Call(HttpClient& client, const std::string& method, const std::string& path,
                      const std::string& body = "",
                      const std::string& content_type = "application/json") {
  Expected<HttpReply> reply = client.Request(method, path, body, content_type);
  EXPECT_TRUE(reply.ok()) << method << " " << path << ": " << reply.status().ToString();
  return reply.ok() ? *reply : HttpReply{};
}

inline json JsonOf(const HttpReply& reply) {
  return json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
}

// Submits a sweep (YAML) and returns its job ids; a refusal fails the test.
inline std::vector<std::string> SubmitSweep(HttpClient& client, const std::string& yaml) {
  HttpReply reply = Call(client, "POST", "/api/v1/sweeps", yaml, "application/yaml");
  EXPECT_EQ(reply.status, 200) << reply.body;
  std::vector<std::string> ids;
  for (const json& id : JsonOf(reply).value("jobs", json::array())) ids.push_back(id);
  return ids;
}

}  // namespace vitscale::testing
