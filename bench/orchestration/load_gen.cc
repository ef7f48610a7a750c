// vitscale-load-gen: the coordinator under agent and metric load (issue 5, "Load").
//
//   vitscale-load-gen --url http://127.0.0.1:PORT --token-file STATE_DIR/token
//                     [--agents 100] [--heartbeat-ms 1000] [--points-per-second 10000]
//                     [--batch 100] [--seconds 60] [--connections 16]
//                     [--heartbeat-only-seconds 0]
//
// Setup, through the real protocol with its real credentials: with the admin token, issue each
// simulated agent its credential and register it (1 slot), then submit a sweep of one job per
// agent. Load: every agent polls every --heartbeat-ms, its first poll handing it one launch and
// its report token (as a real agent starts working; polled during a long setup, the first
// leases of a thousand agents would run out before the last agent registered), the next ones
// listing its job; metric batches go to the jobs' attempts at a fixed rate, round-robin
// over the launched jobs, on a pool of keep-alive connections. Stops by itself
// after --seconds (plus at most 30 s for answers in flight) and prints what it sent and the
// API latency. With --heartbeat-only-seconds W the agents poll alone for W seconds before the
// metric load starts; the lines "phase=heartbeats" and "phase=metrics polls_sent=N" mark the
// switch as it happens, and "phase=launched polls_sent=N" when every agent has its launch, so
// that run_load.sh can read the coordinator's CPU per heartbeat between the two.
//
// Latency. A metric post is timed from when it was due to be sent (so a coordinator that falls
// behind shows up as latency, not as a lower rate) to its whole response. A poll is a long poll
// that the coordinator parks: it answers an agent's previous poll when the next one arrives.
// So each agent alternates two connections, and a heartbeat is timed from sending poll k to the
// answer of poll k-1, which is the coordinator's handling of poll k (lease extension, agent
// row update) plus the round trip.
//
// Everything runs on one thread (one io_context) so that the generator takes little of the CPU
// the coordinator needs. Only loopback addresses are accepted.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <sys/resource.h>

#include "common/files.h"
#include "common/flags.h"
#include "common/http_client.h"
#include "common/status.h"
#include "protocol/agent.h"
#include "protocol/api.h"

namespace {

// User and system CPU seconds of this process so far.
double OwnCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using nlohmann::json;
using namespace vitscale;

constexpr int kExitUsage = 2;
constexpr auto kDrainLimit = std::chrono::seconds(30);

struct Flags {
  std::string url;
  std::string token_file;
  int agents = 100;
  int heartbeat_ms = 1000;
  int points_per_second = 10000;
  int batch = 100;
  int seconds = 60;
  int connections = 16;
  int heartbeat_only_seconds = 0;
};

const char kUsage[] =
    "usage: vitscale-load-gen --url http://127.0.0.1:PORT --token-file STATE_DIR/token [flags]\n"
    "The coordinator under simulated agents and metric batches (bench/orchestration/).\n\n";

const std::vector<FlagSpec> kFlags = {
    {"--url", true, "URL", "the coordinator, on a loopback address (required)"},
    {"--token-file", true, "FILE", "the coordinator's admin token (required)"},
    {"--agents", true, "N", "simulated agents, 1..10000 (default 100)"},
    {"--heartbeat-ms", true, "MS", "each agent's poll period, 10..60000 (default 1000)"},
    {"--points-per-second", true, "N", "metric points per second (default 10000)"},
    {"--batch", true, "N", "points per metric batch, 1..100000 (default 100)"},
    {"--seconds", true, "S", "how long the load lasts, 1..3600 (default 60)"},
    {"--connections", true, "N", "keep-alive connections for metrics, 1..1000 (default 16)"},
    {"--heartbeat-only-seconds", true, "S", "heartbeats alone before the metrics, 0..600 (default 0)"},
};

Expected<Flags> FlagsFrom(const ParsedArgs& args) {
  Flags flags;
  flags.url = args.Get("--url");
  flags.token_file = args.Get("--token-file");
  if (flags.url.empty() || flags.token_file.empty()) {
    return InvalidArgument("--url and --token-file are required");
  }
  struct Number {
    const char* flag;
    int* out;
    int low, high;
  };
  for (const Number& n : {Number{"--agents", &flags.agents, 1, 10000},
                          Number{"--heartbeat-ms", &flags.heartbeat_ms, 10, 60000},
                          Number{"--points-per-second", &flags.points_per_second, 1, 10000000},
                          Number{"--batch", &flags.batch, 1, 100000},
                          Number{"--seconds", &flags.seconds, 1, 3600},
                          Number{"--connections", &flags.connections, 1, 1000},
                          Number{"--heartbeat-only-seconds", &flags.heartbeat_only_seconds, 0, 600}}) {
    ASSIGN_OR_RETURN(long long value, args.GetInt(n.flag, n.low, n.high, *n.out));
    *n.out = static_cast<int>(value);
  }
  return flags;
}

// http://127.0.0.1:PORT → the endpoint. Loopback only: this tool sends load.
Expected<tcp::endpoint> LoopbackEndpoint(const std::string& url) {
  const std::string scheme = "http://";
  if (url.compare(0, scheme.size(), scheme) != 0) {
    return InvalidArgument("--url must start with http://, not '" + url + "'");
  }
  std::string rest = url.substr(scheme.size());
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos) return InvalidArgument("--url needs a port: http://127.0.0.1:PORT");
  boost::system::error_code error;
  asio::ip::address address = asio::ip::make_address(rest.substr(0, colon), error);
  int port = std::atoi(rest.c_str() + colon + 1);
  if (error || !address.is_loopback()) {
    return InvalidArgument("--url must name a loopback address (127.0.0.1), not '" + url + "'");
  }
  if (port <= 0 || port > 65535) return InvalidArgument("--url has no valid port: '" + url + "'");
  return tcp::endpoint(address, static_cast<uint16_t>(port));
}

double Milliseconds(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

struct Latencies {
  std::vector<double> ms;
  std::string Summary() const {
    if (ms.empty()) return "no samples";
    std::vector<double> sorted = ms;
    std::sort(sorted.begin(), sorted.end());
    auto at = [&](double q) {
      return sorted[std::min(sorted.size() - 1, static_cast<size_t>(q * sorted.size()))];
    };
    return fmt::format("n {} p50 {:.2f} ms, p99 {:.2f} ms, max {:.2f} ms", sorted.size(), at(0.5),
                       at(0.99), sorted.back());
  }
};

// One keep-alive HTTP/1.1 connection with at most one request in flight.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using Done = std::function<void(const beast::error_code&, int status, const std::string& body)>;

  Connection(asio::io_context& io, tcp::endpoint endpoint) : socket_(io), endpoint_(endpoint) {}

  bool busy() const { return busy_; }

  // REQUIRES: !busy(). `token` is the credential of this request's scope.
  void Post(const std::string& target, const std::string& token, std::string body, Done done) {
    busy_ = true;
    done_ = std::move(done);
    request_ = {};
    request_.method(http::verb::post);
    request_.target(target);
    request_.version(11);
    request_.set(http::field::host, endpoint_.address().to_string());
    request_.set(http::field::authorization, "Bearer " + token);
    request_.set(http::field::content_type, "application/json");
    request_.keep_alive(true);
    request_.body() = std::move(body);
    request_.prepare_payload();
    if (socket_.is_open()) return Write();
    socket_.async_connect(endpoint_, [self = shared_from_this()](const beast::error_code& error) {
      if (error) return self->Finish(error);
      self->socket_.set_option(tcp::no_delay(true));
      self->Write();
    });
  }

  void Close() {
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  void Write() {
    http::async_write(socket_, request_,
                      [self = shared_from_this()](const beast::error_code& error, size_t) {
                        if (error) return self->Finish(error);
                        self->Read();
                      });
  }

  void Read() {
    response_ = {};
    http::async_read(socket_, buffer_, response_,
                     [self = shared_from_this()](const beast::error_code& error, size_t) {
                       self->Finish(error);
                     });
  }

  void Finish(const beast::error_code& error) {
    busy_ = false;
    if (error || !response_.keep_alive()) {
      Close();
      buffer_.clear();
    }
    Done done = std::move(done_);
    done_ = nullptr;
    if (done) done(error, error ? 0 : response_.result_int(), response_.body());
  }

  tcp::socket socket_;
  tcp::endpoint endpoint_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  bool busy_ = false;
  Done done_;
};

struct SimulatedAgent {
  std::string id;
  std::string credential;    // the agent's own (issued at setup)
  std::string job;
  int attempt = 0;
  std::string report_token;  // its attempt's, from the launch spec
  std::string poll_body;
  std::shared_ptr<Connection> connections[2];
  std::unique_ptr<asio::steady_timer> timer;
  int64_t polls_sent = 0;
  Clock::time_point sent_at[2];  // of the last two polls, by poll number % 2
};

class LoadGenerator {
 public:
  LoadGenerator(const Flags& flags, tcp::endpoint endpoint, std::string token)
      : flags_(flags), endpoint_(endpoint), token_(std::move(token)), metric_timer_(io_) {}

  // Credentials, registrations and the sweep, synchronously, before the load starts.
  Status Setup() {
    HttpClientOptions options;
    options.base_url = flags_.url;
    options.bearer_token = token_;
    ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> client, HttpClient::Create(options));

    for (int i = 0; i < flags_.agents; ++i) {
      auto agent = std::make_unique<SimulatedAgent>();
      agent->id = fmt::format("load-agent-{:04d}", i);
      ASSIGN_OR_RETURN(HttpReply issued,
                       client->PostJson("/api/v1/agents/credentials",
                                        protocol::Dump(protocol::CredentialRequest{agent->id}.ToJson())));
      if (issued.status != 200) {
        return Internal(fmt::format("issuing {} a credential failed: {}", agent->id,
                                    HttpErrorMessage(issued)));
      }
      ASSIGN_OR_RETURN(protocol::CredentialReply credential,
                       protocol::Decode<protocol::CredentialReply>(issued.body));
      agent->credential = credential.token;
      HttpClientOptions agent_options = options;
      agent_options.bearer_token = agent->credential;
      ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> as_agent, HttpClient::Create(agent_options));
      protocol::RegisterRequest body{agent->id, 1, 0, "", {}, std::nullopt};
      Clock::time_point sent = Clock::now();
      ASSIGN_OR_RETURN(HttpReply reply,
                       as_agent->PostJson("/api/v1/agents/register", protocol::Dump(body.ToJson())));
      register_latency_.ms.push_back(Milliseconds(Clock::now() - sent));
      if (reply.status != 200) {
        return Internal(fmt::format("registering {} failed: {}", agent->id, HttpErrorMessage(reply)));
      }
      // Its first poll, on the load's own timeline (Run), hands it its launch.
      agent->poll_body = "{\"running\": []}";
      agents_.push_back(std::move(agent));
    }
    // The jobs come once every agent is registered: submitted before, each would be leased to
    // an agent as it registered, and the first agents' leases would run out while the last
    // ones register (a thousand registrations take a minute or more).
    std::string sweep = "name: load\nrecipe: small-images\n"
                        "pretrain: {model: ViT-Mu/7, dataset: fashion-mnist/0-4, subset: 500, "
                        "epochs: 1}\ngrid:\n  seed: [";
    for (int i = 0; i < flags_.agents; ++i) sweep += fmt::format("{}{}", i ? ", " : "", i);
    sweep += "]\nresources: {ranks: 1, gpus_per_rank: 0}\n";
    ASSIGN_OR_RETURN(HttpReply submitted,
                     client->Request("POST", "/api/v1/sweeps", sweep, "application/yaml"));
    if (submitted.status != 200) {
      return Internal("submitting the sweep failed: " + HttpErrorMessage(submitted));
    }

    return Status::Ok();
  }

  void Run() {
    start_ = Clock::now();
    metric_start_ = start_ + std::chrono::seconds(flags_.heartbeat_only_seconds);
    end_of_load_ = metric_start_ + std::chrono::seconds(flags_.seconds);
    std::printf("phase=heartbeats\n");
    std::fflush(stdout);
    for (size_t i = 0; i < agents_.size(); ++i) {
      SimulatedAgent& agent = *agents_[i];
      for (auto& connection : agent.connections) {
        connection = std::make_shared<Connection>(io_, endpoint_);
      }
      agent.timer = std::make_unique<asio::steady_timer>(io_);
      // Spread the agents evenly over the heartbeat period.
      ScheduleHeartbeat(agent, start_ + std::chrono::milliseconds(flags_.heartbeat_ms) * i /
                                            agents_.size());
    }
    for (int i = 0; i < flags_.connections; ++i) {
      metric_pool_.push_back(std::make_shared<Connection>(io_, endpoint_));
    }
    steps_.assign(agents_.size(), 0);
    total_batches_ = static_cast<int64_t>(flags_.points_per_second) * flags_.seconds / flags_.batch;
    batch_interval_ = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(static_cast<double>(flags_.batch) / flags_.points_per_second));
    ScheduleBatch();
    io_.run();
  }

  int Report() const {
    double seconds = std::chrono::duration<double>(last_metric_answer_ - metric_start_).count();
    std::printf("load: %zu agents polling every %d ms, %d points/s in batches of %d for %d s\n",
                agents_.size(), flags_.heartbeat_ms, flags_.points_per_second, flags_.batch,
                flags_.seconds);
    std::printf("register latency: %s\n", register_latency_.Summary().c_str());
    std::printf("heartbeat (poll) latency: %s; polls sent %lld, refused %lld, lost %lld, "
                "skipped as the previous one was unanswered %lld\n",
                heartbeat_latency_.Summary().c_str(), static_cast<long long>(polls_sent_),
                static_cast<long long>(polls_refused_), static_cast<long long>(polls_lost_),
                static_cast<long long>(polls_late_));
    std::printf("metrics latency (from due time): %s\n", metric_latency_.Summary().c_str());
    std::printf("metrics latency (from write): %s\n", metric_service_latency_.Summary().c_str());
    std::printf("metric batches: %lld sent, %lld acknowledged, %lld refused, %lld lost, %lld unsent\n",
                static_cast<long long>(batches_sent_), static_cast<long long>(batches_acked_),
                static_cast<long long>(batches_refused_), static_cast<long long>(batches_lost_),
                static_cast<long long>(total_batches_ - batches_sent_));
    std::printf("achieved: %.0f points/s (last answer %.1f s after start); most batches waiting for "
                "a connection: %zu\n",
                seconds > 0 ? points_acked_ / seconds : 0.0, seconds, max_backlog_);
    // The generator shares the machine's cores with the coordinator: its own CPU says how much
    // of them the coordinator had.
    std::printf("generator_cpu=%.2f\n", OwnCpuSeconds());
    std::printf("points_sent=%lld points_acknowledged=%lld\n",
                static_cast<long long>(batches_sent_ * flags_.batch),
                static_cast<long long>(points_acked_));
    bool clean = batches_sent_ == total_batches_ && batches_acked_ == batches_sent_ &&
                 polls_refused_ == 0 && polls_lost_ == 0;
    return clean ? 0 : 1;
  }

 private:
  void ScheduleHeartbeat(SimulatedAgent& agent, Clock::time_point when) {
    if (when >= end_of_load_) return;
    agent.timer->expires_at(when);
    agent.timer->async_wait([this, &agent, when](const beast::error_code& error) {
      if (error) return;
      SendPoll(agent);
      ScheduleHeartbeat(agent, when + std::chrono::milliseconds(flags_.heartbeat_ms));
    });
  }

  void SendPoll(SimulatedAgent& agent) {
    Connection& connection = *agent.connections[agent.polls_sent % 2];
    if (connection.busy()) {
      // Poll k-2 is still parked: poll k-1 has not been handled yet. The heartbeat is late.
      ++polls_late_;
      return;
    }
    int64_t number = agent.polls_sent++;
    ++polls_sent_;
    Clock::time_point sent = Clock::now();
    agent.sent_at[number % 2] = sent;
    connection.Post("/api/v1/agents/" + agent.id + "/poll", agent.credential, agent.poll_body,
                    [this, &agent, number](const beast::error_code& error, int status,
                                           const std::string& body) {
                      if (error) {
                        if (!stopping_) ++polls_lost_;
                        return;
                      }
                      if (status != 200) {
                        ++polls_refused_;
                        std::fprintf(stderr, "poll of %s answered %d: %s\n", agent.id.c_str(),
                                     status, body.substr(0, 200).c_str());
                        return;
                      }
                      if (agent.job.empty()) TakeLaunch(agent, body);
                      // Answered because poll number+1 arrived: time that one's handling.
                      // Poll number+2 waits for this connection, so sent_at still holds number+1.
                      if (agent.polls_sent > number + 1) {
                        heartbeat_latency_.ms.push_back(
                            Milliseconds(Clock::now() - agent.sent_at[(number + 1) % 2]));
                      }
                    });
  }

  // The answer to an agent's first poll: one launch (one slot, one job per agent).
  void TakeLaunch(SimulatedAgent& agent, const std::string& body) {
    Expected<protocol::PollReply> poll = protocol::Decode<protocol::PollReply>(body);
    if (!poll.ok() || poll->launch.size() != 1) {
      ++polls_refused_;
      std::fprintf(stderr, "agent %s expected one launch from its first poll, got %s\n",
                   agent.id.c_str(), body.substr(0, 300).c_str());
      return;
    }
    const protocol::LaunchEntry& launch = poll->launch.front();
    agent.job = launch.job;
    agent.attempt = launch.attempt;
    agent.report_token = launch.spec["run"].value("report_token", "");
    agent.poll_body = protocol::Dump(protocol::PollRequest{{{agent.job, agent.attempt}}}.ToJson());
    if (++launched_ == agents_.size()) {
      std::printf("phase=launched polls_sent=%lld\n", static_cast<long long>(polls_sent_));
      std::fflush(stdout);
    }
  }

  void ScheduleBatch() {
    if (batches_due_ >= total_batches_) return;
    Clock::time_point due = metric_start_ + batch_interval_ * batches_due_;
    metric_timer_.expires_at(due);
    metric_timer_.async_wait([this](const beast::error_code& error) {
      if (error) return;
      if (batches_due_ == 0) {
        std::printf("phase=metrics cpu=%.2f polls_sent=%lld\n", OwnCpuSeconds(),
                    static_cast<long long>(polls_sent_));
        std::fflush(stdout);
      }
      // Catch up on every batch now due (a timer may fire late on a busy machine).
      Clock::time_point now = Clock::now();
      while (batches_due_ < total_batches_ && metric_start_ + batch_interval_ * batches_due_ <= now) {
        backlog_.push_back(metric_start_ + batch_interval_ * batches_due_);
        ++batches_due_;
      }
      max_backlog_ = std::max(max_backlog_, backlog_.size());
      SendBacklog();
      ScheduleBatch();
    });
  }

  void SendBacklog() {
    for (auto& connection : metric_pool_) {
      if (backlog_.empty()) return;
      if (!connection->busy()) SendBatch(*connection);
    }
  }

  void SendBatch(Connection& connection) {
    // The next launched job in turn; none yet (a load without --heartbeat-only-seconds), the
    // batch waits in the backlog.
    size_t index = 0;
    size_t tries = 0;
    for (; tries < agents_.size(); ++tries) {
      index = batch_counter_++ % agents_.size();
      if (!agents_[index]->job.empty()) break;
    }
    if (tries == agents_.size()) return;
    SimulatedAgent& agent = *agents_[index];
    Clock::time_point due = backlog_.front();
    backlog_.pop_front();
    fmt::memory_buffer body;
    fmt::format_to(std::back_inserter(body), "{{\"points\":[");
    for (int i = 0; i < flags_.batch; ++i) {
      int64_t step = steps_[index]++;
      fmt::format_to(std::back_inserter(body), "{}{{\"step\":{},\"name\":\"load\",\"value\":{}}}",
                     i ? "," : "", step, 1.0 / (1.0 + static_cast<double>(step)));
    }
    fmt::format_to(std::back_inserter(body), "]}}");
    ++batches_sent_;
    Clock::time_point written = Clock::now();
    connection.Post(
        fmt::format("/api/v1/jobs/{}/attempts/{}/metrics", agent.job, agent.attempt),
        agent.report_token, fmt::to_string(body),
        [this, due, written, &connection](const beast::error_code& error, int status,
                                          const std::string& reply) {
          Clock::time_point now = Clock::now();
          if (error) {
            ++batches_lost_;
            std::fprintf(stderr, "metric batch lost: %s\n", error.message().c_str());
          } else if (status != 200) {
            ++batches_refused_;
            std::fprintf(stderr, "metric batch answered %d: %s\n", status, reply.substr(0, 200).c_str());
          } else {
            ++batches_acked_;
            json parsed = json::parse(reply, nullptr, false);
            points_acked_ += parsed.is_object() ? parsed.value("stored", 0) : 0;
            metric_latency_.ms.push_back(Milliseconds(now - due));
            metric_service_latency_.ms.push_back(Milliseconds(now - written));
          }
          last_metric_answer_ = now;
          if (!backlog_.empty()) {
            SendBatch(connection);
          } else if (batches_due_ >= total_batches_) {
            MaybeFinish();
          }
        });
  }

  void MaybeFinish() {
    bool busy = std::any_of(metric_pool_.begin(), metric_pool_.end(),
                            [](const auto& c) { return c->busy(); });
    if (busy && Clock::now() < end_of_load_ + kDrainLimit) return;
    Stop();
  }

  void Stop() {
    if (stopping_) return;
    stopping_ = true;
    // Answers to the last parked polls are not waited for: closing drops them.
    for (auto& agent : agents_) {
      agent->timer->cancel();
      for (auto& connection : agent->connections) connection->Close();
    }
    for (auto& connection : metric_pool_) connection->Close();
    metric_timer_.cancel();
    io_.stop();
  }

  Flags flags_;
  tcp::endpoint endpoint_;
  std::string token_;
  asio::io_context io_;
  std::vector<std::unique_ptr<SimulatedAgent>> agents_;
  Clock::time_point start_, metric_start_, end_of_load_, last_metric_answer_;
  bool stopping_ = false;
  size_t launched_ = 0;  // agents that have their launch

  asio::steady_timer metric_timer_;
  std::vector<std::shared_ptr<Connection>> metric_pool_;
  std::deque<Clock::time_point> backlog_;  // due times of batches waiting for a connection
  size_t max_backlog_ = 0;
  std::vector<int64_t> steps_;
  Clock::duration batch_interval_{};
  int64_t total_batches_ = 0, batches_due_ = 0, batch_counter_ = 0;
  int64_t batches_sent_ = 0, batches_acked_ = 0, batches_refused_ = 0, batches_lost_ = 0;
  int64_t points_acked_ = 0;
  int64_t polls_sent_ = 0, polls_refused_ = 0, polls_lost_ = 0, polls_late_ = 0;

  Latencies register_latency_, heartbeat_latency_, metric_latency_, metric_service_latency_;
};

}  // namespace

int main(int argc, char** argv) {
  CommandLine line = ParseCommandLine(argc, argv, "vitscale-load-gen", kUsage, kFlags);
  if (line.exit_code >= 0) return line.exit_code;
  Expected<Flags> flags = FlagsFrom(line.args);
  if (!flags.ok()) {
    std::fprintf(stderr, "vitscale-load-gen: %s\n", flags.status().message().c_str());
    return kExitUsage;
  }
  Expected<tcp::endpoint> endpoint = LoopbackEndpoint(flags->url);
  if (!endpoint.ok()) {
    std::fprintf(stderr, "vitscale-load-gen: %s\n", endpoint.status().message().c_str());
    return kExitUsage;
  }
  Expected<std::string> token = ReadTokenFile(flags->token_file);
  if (!token.ok()) {
    std::fprintf(stderr, "vitscale-load-gen: %s\n", token.status().ToString().c_str());
    return kExitUsage;
  }
  const std::string bearer = *token;

  LoadGenerator generator(*flags, *endpoint, bearer);
  Status ready = generator.Setup();
  if (!ready.ok()) {
    std::fprintf(stderr, "vitscale-load-gen: setup: %s\n", ready.ToString().c_str());
    return 1;
  }
  generator.Run();
  return generator.Report();
}
