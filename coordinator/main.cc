// vitscale-coordinator: the daemon that owns the database, the scheduler and the HTTP API.
//
//   vitscale-coordinator --state-dir DIR [--listen 127.0.0.1:8470] [--open-read]
//                        [--dashboard DIR] [--runs-dir DIR] [--public-url URL]
//                        [--lease-seconds 30] [--max-retries 2] [--grace-seconds 60]
//                        [--checkpoint-every-steps 200]
//
// DIR holds vitscale.db, the bearer token (DIR/token, mode 0600, made at first start) and the
// address it listens on (DIR/address, written once listening, so tests and scripts can use
// port 0). Stopped by SIGTERM or SIGINT; killed at any moment, it restarts where it was.
#include <sys/stat.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "common/files.h"
#include "coordinator/coordinator.h"
#include "coordinator/http_server.h"
#include "coordinator/scheduler.h"
#include "storage/store.h"

namespace {

using namespace vitscale;

constexpr int kExitUsage = 2;

struct Flags {
  std::string state_dir;
  std::string listen = "127.0.0.1:8470";
  bool open_read = false;
  std::string dashboard;
  std::string runs_dir;
  std::string public_url;
  int lease_seconds = 30;
  int max_retries = 2;
  int grace_seconds = 60;
  int checkpoint_every_steps = 200;
};

void Usage() {
  std::fprintf(stderr,
               "usage: vitscale-coordinator --state-dir DIR [--listen HOST:PORT] [--open-read]\n"
               "         [--dashboard DIR] [--runs-dir DIR] [--public-url URL]\n"
               "         [--lease-seconds N] [--max-retries N] [--grace-seconds N]\n"
               "         [--checkpoint-every-steps N]\n");
}

Expected<Flags> ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    auto value = [&]() -> Expected<std::string> {
      if (i + 1 >= argc) return InvalidArgument(flag + " needs a value");
      return std::string(argv[++i]);
    };
    auto number = [&](int& out, int low, int high) -> Status {
      ASSIGN_OR_RETURN(std::string text, value());
      char* end = nullptr;
      long parsed = std::strtol(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || parsed < low || parsed > high) {
        return InvalidArgument(fmt::format("{} must be an integer within {}..{}", flag, low, high));
      }
      out = static_cast<int>(parsed);
      return Status::Ok();
    };
    if (flag == "--state-dir") {
      ASSIGN_OR_RETURN(flags.state_dir, value());
    } else if (flag == "--listen") {
      ASSIGN_OR_RETURN(flags.listen, value());
    } else if (flag == "--open-read") {
      flags.open_read = true;
    } else if (flag == "--dashboard") {
      ASSIGN_OR_RETURN(flags.dashboard, value());
    } else if (flag == "--runs-dir") {
      ASSIGN_OR_RETURN(flags.runs_dir, value());
    } else if (flag == "--public-url") {
      ASSIGN_OR_RETURN(flags.public_url, value());
    } else if (flag == "--lease-seconds") {
      RETURN_IF_ERROR(number(flags.lease_seconds, 2, 3600));
    } else if (flag == "--max-retries") {
      RETURN_IF_ERROR(number(flags.max_retries, 0, 100));
    } else if (flag == "--grace-seconds") {
      RETURN_IF_ERROR(number(flags.grace_seconds, 1, 3600));
    } else if (flag == "--checkpoint-every-steps") {
      RETURN_IF_ERROR(number(flags.checkpoint_every_steps, 0, 1000000000));
    } else {
      return InvalidArgument("unknown flag '" + flag + "'");
    }
  }
  if (flags.state_dir.empty()) return InvalidArgument("--state-dir is required");
  return flags;
}

// The bearer token: read it, or make one at first start. Only the owner may read the file.
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
  std::ifstream random("/dev/urandom", std::ios::binary);
  unsigned char bytes[24];
  if (!random.read(reinterpret_cast<char*>(bytes), sizeof(bytes))) {
    return IOError("cannot read /dev/urandom for a token");
  }
  std::string token;
  for (unsigned char b : bytes) token += fmt::format("{:02x}", b);
  RETURN_IF_ERROR(WriteFileAtomically(path, token + "\n", 0600));
  return token;
}

int Run(const Flags& flags) {
  namespace fs = std::filesystem;
  std::error_code error;
  fs::create_directories(flags.state_dir, error);
  if (error) {
    std::fprintf(stderr, "vitscale-coordinator: cannot create %s: %s\n", flags.state_dir.c_str(),
                 error.message().c_str());
    return 1;
  }
  size_t colon = flags.listen.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "vitscale-coordinator: --listen must be HOST:PORT, not '%s'\n",
                 flags.listen.c_str());
    return kExitUsage;
  }
  std::string host = flags.listen.substr(0, colon);
  int port = std::atoi(flags.listen.c_str() + colon + 1);
  if (port < 0 || port > 65535) {
    std::fprintf(stderr, "vitscale-coordinator: port %d is out of range\n", port);
    return kExitUsage;
  }

  Expected<std::string> token = LoadOrCreateToken(flags.state_dir + "/token");
  if (!token.ok()) {
    std::fprintf(stderr, "vitscale-coordinator: %s\n", token.status().ToString().c_str());
    return 1;
  }
  auto store = storage::Store::Open(flags.state_dir + "/vitscale.db");
  if (!store.ok()) {
    std::fprintf(stderr, "vitscale-coordinator: %s\n", store.status().ToString().c_str());
    return 1;
  }

  coordinator::SteadyClock clock;
  coordinator::SchedulerOptions scheduler_options;
  scheduler_options.lease_duration = std::chrono::seconds(flags.lease_seconds);
  scheduler_options.preempt_grace = std::chrono::seconds(flags.grace_seconds);
  auto scheduler = coordinator::Scheduler::Create(&clock, scheduler_options);
  if (!scheduler.ok()) {
    std::fprintf(stderr, "vitscale-coordinator: %s\n", scheduler.status().ToString().c_str());
    return 1;
  }

  boost::asio::io_context io;
  coordinator::HttpServerOptions server_options;
  server_options.address = host;
  server_options.port = static_cast<uint16_t>(port);
  server_options.token = *token;
  server_options.open_read_access = flags.open_read;
  server_options.static_dir = flags.dashboard;
  coordinator::Router router;
  coordinator::HttpServer server(io, router, server_options);
  Status listening = server.Start();
  if (!listening.ok()) {
    std::fprintf(stderr, "vitscale-coordinator: %s\n", listening.ToString().c_str());
    return 1;
  }
  std::string url = fmt::format("http://{}:{}", host, server.port());

  coordinator::CoordinatorOptions options;
  options.runs_dir = flags.runs_dir.empty() ? flags.state_dir + "/runs" : flags.runs_dir;
  options.runs_dir = fs::absolute(options.runs_dir).string();
  options.public_url = flags.public_url.empty() ? url : flags.public_url;
  options.token = *token;
  options.lease = std::chrono::seconds(flags.lease_seconds);
  // The poll is the heartbeat: a held poll must come back well within the lease, or a short
  // --lease-seconds would expire every job while its agent waits for work.
  options.poll_timeout =
      std::min<std::chrono::milliseconds>(std::chrono::seconds(20), options.lease / 3);
  options.max_retries = flags.max_retries;
  options.grace_seconds = flags.grace_seconds;
  options.checkpoint_every_steps = flags.checkpoint_every_steps;
  coordinator::Coordinator service(io, **store, *scheduler, clock, options);
  service.SetPublisher([&server](const std::string& event) { server.Broadcast(event); });
  server.SetCatchUp([&service](const std::map<std::string, std::string>& query) {
    auto since = query.find("since");
    if (since == query.end()) return std::vector<std::string>();
    char* end = nullptr;
    long long seq = std::strtoll(since->second.c_str(), &end, 10);
    if (*end != '\0') return std::vector<std::string>();
    return service.EventsSince(seq);
  });
  Status restored = service.Restore();
  if (!restored.ok()) {
    std::fprintf(stderr, "vitscale-coordinator: cannot restore state: %s\n",
                 restored.ToString().c_str());
    return 1;
  }
  service.AddRoutes(router);
  service.Start();

  Status written = WriteFileAtomically(flags.state_dir + "/address", url + "\n");
  if (!written.ok()) std::fprintf(stderr, "vitscale-coordinator: %s\n", written.ToString().c_str());
  std::printf("vitscale-coordinator: listening on %s (state in %s)\n", url.c_str(),
              flags.state_dir.c_str());
  std::fflush(stdout);

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    service.Stop();
    server.Stop();
    io.stop();
  });
  io.run();
  std::printf("vitscale-coordinator: stopped\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Expected<Flags> flags = ParseFlags(argc, argv);
  if (!flags.ok()) {
    std::fprintf(stderr, "vitscale-coordinator: %s\n", flags.status().message().c_str());
    Usage();
    return kExitUsage;
  }
  return Run(*flags);
}
