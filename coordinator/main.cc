// vitscale-coordinator: the daemon that owns the database, the scheduler and the HTTP API.
// `vitscale-coordinator --help` lists the flags; docs/api.md describes them.
//
// DIR holds vitscale.db, the admin token (DIR/token, made at first start) and the address it
// listens on (DIR/address, written once listening, so tests and scripts can use port 0).
// Everything it creates is readable by its owner only. Stopped by SIGTERM or SIGINT; killed at
// any moment, it restarts where it was.
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "common/files.h"
#include "common/flags.h"
#include "common/secrets.h"
#include "coordinator/coordinator.h"
#include "coordinator/http_server.h"
#include "protocol/agent.h"
#include "storage/store.h"

namespace {

using namespace vitscale;

constexpr int kExitUsage = 2;

const char kUsage[] =
    "usage: vitscale-coordinator --state-dir DIR [flags]\n"
    "The vitscale coordinator: the database, the scheduler and the HTTP API (docs/api.md).\n\n";

const std::vector<FlagSpec> kFlags = {
    {"--state-dir", true, "DIR", "database, admin token and address file (required)"},
    {"--listen", true, "HOST:PORT", "where to listen (default 127.0.0.1:8470; port 0 = any)"},
    {"--open-read", false, "", "let anyone read the API and the event stream without a token"},
    {"--dashboard", true, "DIR", "serve the dashboard's files from DIR"},
    {"--runs-dir", true, "DIR", "where jobs run, one folder per job (default DIR/runs)"},
    {"--public-url", true, "URL", "the URL trainers report to (default: the listen address)"},
    {"--lease-seconds", true, "N", "lease and agent liveness, 2..3600 (default 30)"},
    {"--max-retries", true, "N", "failures retried per job, 0..100 (default 2)"},
    {"--grace-seconds", true, "N", "SIGTERM to SIGKILL for a preempted job, 1..3600 (default 60)"},
    {"--checkpoint-every-steps", true, "N", "trainer checkpoint cadence (default 200; 0 = end only)"},
    {"--max-connections", true, "N", "open connections before new ones get a 503 (default 4096)"},
};

// A lab of a thousand agents holds a parked poll per agent, beside reports, dashboards and the
// CLI: the default cap serves that with room to spare, and still bounds what a flood can open.
constexpr long long kDefaultMaxConnections = 4096;
// Descriptors beyond the connections (event streams are connections too): the database, its
// WAL and shared memory, the listening socket, and the logs and specs written for jobs.
constexpr rlim_t kSpareDescriptors = 256;

// Each connection holds a descriptor, and the usual soft limit (1024) is below the cap: raises
// the soft limit toward the hard one so that `connections` can be open at once. Returns the cap
// the limit allows: an explicit --max-connections beyond the hard limit is an error saying what
// to change; the default is lowered to fit, with a warning.
Expected<size_t> FitDescriptorLimit(long long connections, bool explicit_flag) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return static_cast<size_t>(connections);
  rlim_t wanted = static_cast<rlim_t>(connections) + kSpareDescriptors;
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < wanted) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, limit.rlim_max);
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= wanted) {
    return static_cast<size_t>(connections);
  }
  long long fits = static_cast<long long>(limit.rlim_cur) - static_cast<long long>(kSpareDescriptors);
  if (explicit_flag || fits < 1) {
    return InvalidArgument(fmt::format(
        "--max-connections {} needs {} file descriptors, but this process may open {} (ulimit "
        "-n; hard limit {}): lower --max-connections or raise the limit",
        connections, wanted, limit.rlim_cur,
        limit.rlim_max == RLIM_INFINITY ? std::string("unlimited") : std::to_string(limit.rlim_max)));
  }
  std::fprintf(stderr,
               "vitscale-coordinator: warning: the file descriptor limit (%llu) allows %lld open "
               "connections, not %lld; raise it (ulimit -n) to serve more\n",
               static_cast<unsigned long long>(limit.rlim_cur), fits, connections);
  return static_cast<size_t>(fits);
}

// The admin token: read it, or make one at first start. Only the owner may read the file.
Expected<std::string> LoadOrCreateToken(const std::string& path) {
  Expected<std::string> existing = ReadTokenFile(path);
  if (existing.ok()) {
    const std::string& token = *existing;
    if (token.size() < 16) return InvalidArgument("token file " + path + " holds no usable token");
    struct stat info {};
    if (::stat(path.c_str(), &info) == 0 && (info.st_mode & 077) != 0) {
      std::fprintf(stderr, "vitscale-coordinator: warning: %s is readable by others; chmod 600 it\n",
                   path.c_str());
    }
    return token;
  }
  if (existing.status().code() != StatusCode::kNotFound) return existing.status();
  ASSIGN_OR_RETURN(std::string token, RandomHexToken(32));
  RETURN_IF_ERROR(WriteFileAtomically(path, token + "\n", 0600));
  return token;
}

int Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "vitscale-coordinator: %s\n", message.c_str());
  return code;
}

int Run(const ParsedArgs& args) {
  namespace fs = std::filesystem;
  std::string state_dir = args.Get("--state-dir");
  if (state_dir.empty()) return Fail("--state-dir DIR is required; see --help", kExitUsage);
  Expected<long long> lease = args.GetInt("--lease-seconds", 2, 3600, 30);
  Expected<long long> retries = args.GetInt("--max-retries", 0, 100, 2);
  Expected<long long> grace = args.GetInt("--grace-seconds", 1, 3600, 60);
  Expected<long long> every = args.GetInt("--checkpoint-every-steps", 0, 1000000000, 200);
  Expected<long long> connections =
      args.GetInt("--max-connections", 1, 1000000, kDefaultMaxConnections);
  for (const auto* value : {&lease, &retries, &grace, &every, &connections}) {
    if (!value->ok()) return Fail(value->status().message(), kExitUsage);
  }
  std::string listen = args.Get("--listen", "127.0.0.1:8470");
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return Fail("--listen must be HOST:PORT, not '" + listen + "'", kExitUsage);
  }
  std::string host = listen.substr(0, colon);
  Expected<long long> port = ParseInteger(listen.substr(colon + 1), "the port of --listen", 0, 65535);
  if (!port.ok()) return Fail(port.status().message(), kExitUsage);

  Expected<size_t> max_connections = FitDescriptorLimit(*connections, args.Has("--max-connections"));
  if (!max_connections.ok()) return Fail(max_connections.status().message(), kExitUsage);

  // The database, the token, logs and specs of jobs: nobody but the owner reads them.
  ::umask(077);
  std::error_code error;
  fs::create_directories(state_dir, error);
  if (error) return Fail("cannot create " + state_dir + ": " + error.message());
  fs::permissions(state_dir, fs::perms::owner_all, fs::perm_options::replace, error);
  if (error) return Fail("cannot make " + state_dir + " private: " + error.message());

  Expected<std::string> token = LoadOrCreateToken(state_dir + "/token");
  if (!token.ok()) return Fail(token.status().ToString());
  // The store runs on the server's one thread: a write that finds the database locked by another
  // process waits at most this long, then the request gets a 503 and its sender retries, so a
  // long transaction elsewhere never stalls every other request for seconds.
  storage::OpenOptions store_options;
  store_options.busy_timeout_ms = 100;
  auto store = storage::Store::Open(state_dir + "/vitscale.db", store_options);
  if (!store.ok()) return Fail(store.status().ToString());

  const Clock& clock = SystemClock::Get();
  boost::asio::io_context io;
  coordinator::CoordinatorOptions options;
  options.runs_dir = args.Get("--runs-dir", state_dir + "/runs");
  options.runs_dir = fs::absolute(options.runs_dir).lexically_normal().string();
  fs::create_directories(options.runs_dir, error);
  if (error) return Fail("cannot create " + options.runs_dir + ": " + error.message());
  // Agents read it back at registration: those that see this folder may share a job.
  Expected<std::string> runs_mark =
      LoadOrCreateToken(options.runs_dir + "/" + protocol::kRunsMarkFile);
  if (!runs_mark.ok()) return Fail(runs_mark.status().ToString());
  options.runs_mark = *runs_mark;
  options.admin_token = *token;
  options.open_read_access = args.Has("--open-read");
  options.scheduler.lease_duration = std::chrono::seconds(*lease);
  options.scheduler.preempt_grace = std::chrono::seconds(*grace);
  // The poll is the heartbeat: a held poll must come back well within the lease, or a short
  // --lease-seconds would expire every job while its agent waits for work.
  options.poll_timeout = std::min<std::chrono::milliseconds>(
      std::chrono::seconds(20), std::chrono::milliseconds(*lease * 1000 / 3));
  options.max_retries = static_cast<int>(*retries);
  options.grace_seconds = static_cast<int>(*grace);
  options.checkpoint_every_steps = static_cast<int>(*every);

  coordinator::HttpServerOptions server_options;
  server_options.address = host;
  server_options.port = static_cast<uint16_t>(*port);
  server_options.gate.open_read_access = options.open_read_access;
  server_options.gate.static_dir = args.Get("--dashboard");
  server_options.max_connections = *max_connections;
  coordinator::Router router;
  // The server needs the coordinator's authorizer, and the coordinator the server's URL: the
  // authorizer is bound once both exist.
  coordinator::Coordinator* service_ptr = nullptr;
  coordinator::HttpServer server(
      io, router, server_options,
      [&service_ptr](coordinator::Scope scope, const std::string& token,
                     const coordinator::HttpRequest& request) -> Expected<coordinator::Caller> {
        if (service_ptr == nullptr) return Unavailable("starting");
        return service_ptr->authorizer()(scope, token, request);
      });
  Status listening = server.Start();
  if (!listening.ok()) return Fail(listening.ToString());
  std::string url = fmt::format("http://{}:{}", host, server.port());
  options.public_url = args.Get("--public-url", url);

  Expected<std::unique_ptr<coordinator::Coordinator>> service =
      coordinator::Coordinator::Create(io, **store, clock, options);
  if (!service.ok()) return Fail(service.status().ToString(), kExitUsage);
  coordinator::Coordinator& instance = **service;
  instance.SetPublisher([&server](coordinator::EventLog::Message event) {
    server.Broadcast(std::move(event));
  });
  server.SetCatchUp([&instance](const std::map<std::string, std::string>& query) {
    auto since = query.find("since");
    if (since == query.end()) return std::vector<coordinator::EventLog::Message>();
    Expected<long long> seq =
        ParseInteger(since->second, "since", std::numeric_limits<int64_t>::min(),
                     std::numeric_limits<int64_t>::max());
    if (!seq.ok()) return std::vector<coordinator::EventLog::Message>();
    return instance.EventsSince(*seq);
  });
  Status restored = instance.Restore();
  if (!restored.ok()) return Fail("cannot restore state: " + restored.ToString());
  instance.AddRoutes(router);
  service_ptr = &instance;
  instance.Start();

  Status written = WriteFileAtomically(state_dir + "/address", url + "\n", 0600);
  if (!written.ok()) std::fprintf(stderr, "vitscale-coordinator: %s\n", written.ToString().c_str());
  std::printf("vitscale-coordinator: listening on %s (state in %s)\n", url.c_str(),
              state_dir.c_str());
  std::fflush(stdout);

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    instance.Stop();
    server.Stop();
    io.stop();
  });
  // No exception may stop the server: one that escapes a completion handler is logged, and the
  // loop goes on.
  for (;;) {
    try {
      io.run();
      break;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "vitscale-coordinator: internal error (continuing): %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "vitscale-coordinator: internal error (continuing)\n");
    }
  }
  std::printf("vitscale-coordinator: stopped\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CommandLine line = ParseCommandLine(argc, argv, "vitscale-coordinator", kUsage, kFlags);
  if (line.exit_code >= 0) return line.exit_code;
  return Run(line.args);
}
