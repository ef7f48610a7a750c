// vitscale-agent: the worker daemon, one per host. See docs/agent.md.
//
//   vitscale-agent --coordinator URL --token-file FILE [--host NAME] [--slots N]
//                  [--gpus auto|N] [--work-dir DIR] [--train-command PATH] [--mpirun PATH]
//
// SIGTERM or SIGINT: stop taking work, preempt the running jobs, report how they ended, exit 0.
#include <fmt/format.h>
#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "common/files.h"
#include "common/names.h"
#include "worker/agent.h"
#include "worker/launcher.h"

namespace {

using namespace vitscale;

constexpr int kExitUsage = 2;
constexpr int kExitError = 1;

void Usage() {
  std::fprintf(stderr,
               "usage: vitscale-agent --coordinator URL --token-file FILE [--host NAME]\n"
               "         [--slots N] [--gpus auto|N] [--work-dir DIR]\n"
               "         [--train-command PATH] [--mpirun PATH]\n");
}

Expected<int> ParseCount(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < 0 || value > 4096) {
    return InvalidArgument(flag + " must be an integer within 0..4096, not '" + text + "'");
  }
  return static_cast<int>(value);
}

// vitscale-train beside this executable when it is there (a build or an install), else PATH.
std::string DefaultTrainCommand() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    std::filesystem::path sibling = self.parent_path() / "vitscale-train";
    if (std::filesystem::exists(sibling, ec)) return sibling.string();
  }
  return "vitscale-train";
}

Expected<worker::AgentOptions> ParseFlags(int argc, char** argv) {
  worker::AgentOptions options;
  std::string token_file;
  std::string gpus = "auto";
  bool slots_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    auto value = [&]() -> Expected<std::string> {
      if (i + 1 >= argc) return InvalidArgument(flag + " needs a value");
      return std::string(argv[++i]);
    };
    if (flag == "--coordinator") {
      ASSIGN_OR_RETURN(options.coordinator_url, value());
    } else if (flag == "--token-file") {
      ASSIGN_OR_RETURN(token_file, value());
    } else if (flag == "--host") {
      ASSIGN_OR_RETURN(options.host, value());
    } else if (flag == "--slots") {
      ASSIGN_OR_RETURN(std::string text, value());
      ASSIGN_OR_RETURN(options.slots, ParseCount(flag, text));
      slots_given = true;
    } else if (flag == "--gpus") {
      ASSIGN_OR_RETURN(gpus, value());
    } else if (flag == "--work-dir") {
      ASSIGN_OR_RETURN(options.work_dir, value());
    } else if (flag == "--train-command") {
      ASSIGN_OR_RETURN(options.train_command, value());
    } else if (flag == "--mpirun") {
      ASSIGN_OR_RETURN(options.mpirun, value());
    } else if (flag == "--help" || flag == "-h") {
      Usage();
      std::exit(0);
    } else {
      return InvalidArgument(
          "unknown flag '" + flag + "'" +
          DidYouMean(flag, {"--coordinator", "--token-file", "--host", "--slots", "--gpus",
                            "--work-dir", "--train-command", "--mpirun"}));
    }
  }
  if (options.coordinator_url.empty()) return InvalidArgument("--coordinator URL is required");
  if (token_file.empty()) {
    return InvalidArgument(
        "--token-file is required (the coordinator writes it to <state dir>/token)");
  }
  Expected<std::string> token = ReadTokenFile(token_file);
  if (!token.ok()) return InvalidArgument("--token-file: " + token.status().message());
  options.token = *token;
  if (options.host.empty()) {
    char name[HOST_NAME_MAX + 1] = {};
    if (::gethostname(name, sizeof(name)) != 0 || name[0] == '\0') {
      return InvalidArgument("cannot read this machine's host name; pass --host NAME");
    }
    options.host = name;
  }
  if (!slots_given)
    options.slots = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (gpus == "auto") {
    options.gpus = worker::DetectGpus();
  } else {
    ASSIGN_OR_RETURN(options.gpus, ParseCount("--gpus", gpus));
  }
  if (options.work_dir.empty()) options.work_dir = "vitscale-agent-" + options.host;
  std::error_code ec;
  std::filesystem::create_directories(options.work_dir, ec);
  if (ec) return InvalidArgument("--work-dir " + options.work_dir + ": " + ec.message());
  options.work_dir = std::filesystem::absolute(options.work_dir).string();
  if (options.train_command.empty()) options.train_command = DefaultTrainCommand();
  options.allow_run_as_root = ::geteuid() == 0;
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  Expected<worker::AgentOptions> options = ParseFlags(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "vitscale-agent: %s\n", options.status().message().c_str());
    Usage();
    return kExitUsage;
  }
  // Block the stop signals in every thread; one thread waits for them and asks the agent to stop.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  worker::ProcessLauncher launcher;
  Expected<std::unique_ptr<worker::Agent>> agent = worker::Agent::Create(*options, launcher);
  if (!agent.ok()) {
    std::fprintf(stderr, "vitscale-agent: %s\n", agent.status().message().c_str());
    return kExitUsage;
  }
  worker::Agent* running = agent->get();
  std::thread waiter([&stop_signals, running] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    if (signal != 0) {
      std::fprintf(stderr, "vitscale-agent: %s: stopping\n", strsignal(signal));
      running->RequestStop();
    }
  });
  Status status = (*agent)->Run();
  // Run() returns only after a stop signal, so the waiter has already returned.
  waiter.join();
  if (!status.ok()) {
    std::fprintf(stderr, "vitscale-agent: %s\n", status.ToString().c_str());
    return kExitError;
  }
  return 0;
}
