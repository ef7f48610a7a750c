// vitscale-agent: the worker daemon, one per host. See docs/agent.md; `--help` lists the flags.
//
// SIGTERM or SIGINT: stop taking work, preempt the running jobs, report how they ended, exit 0.
#include <fmt/format.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "common/files.h"
#include "common/flags.h"
#include "worker/agent.h"
#include "worker/launcher.h"

namespace {

using namespace vitscale;

constexpr int kExitUsage = 2;
constexpr int kExitError = 1;

const char kUsage[] =
    "usage: vitscale-agent --coordinator URL --token-file FILE [flags]\n"
    "The vitscale worker agent: offers this host's slots and runs the jobs it is given "
    "(docs/agent.md).\n\n";

const std::vector<FlagSpec> kFlags = {
    {"--coordinator", true, "URL", "the coordinator's base URL, http://host:port (required)"},
    {"--token-file", true, "FILE",
     "this host's agent credential (`vitscale agents issue HOST` prints one; required)"},
    {"--host", true, "NAME", "the agent's id and mpirun host name (default: the host name)"},
    {"--slots", true, "N", "ranks this host runs at once (default: CPU cores)"},
    {"--gpus", true, "auto|N", "GPUs offered (default auto: what nvidia-smi -L lists)"},
    {"--work-dir", true, "DIR", "spec files and default logs (default ./vitscale-agent-HOST)"},
    {"--runs-dir", true, "DIR", "the coordinator's runs folder, where job logs and runs may go"},
    {"--train-command", true, "PATH", "what every rank runs (default vitscale-train beside this)"},
    {"--mpirun", true, "PATH", "Open MPI's launcher (default mpirun)"},
};

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

Expected<worker::AgentOptions> OptionsFrom(const ParsedArgs& args) {
  worker::AgentOptions options;
  options.coordinator_url = args.Get("--coordinator");
  if (options.coordinator_url.empty()) return InvalidArgument("--coordinator URL is required");
  std::string token_file = args.Get("--token-file");
  if (token_file.empty()) {
    return InvalidArgument(
        "--token-file is required: this host's agent credential, which `vitscale agents issue "
        "HOST` prints");
  }
  Expected<std::string> token = ReadTokenFile(token_file);
  if (!token.ok()) return InvalidArgument("--token-file: " + token.status().message());
  options.token = *token;
  options.host = args.Get("--host");
  if (options.host.empty()) {
    char name[HOST_NAME_MAX + 1] = {};
    if (::gethostname(name, sizeof(name)) != 0 || name[0] == '\0') {
      return InvalidArgument("cannot read this machine's host name; pass --host NAME");
    }
    options.host = name;
  }
  long long cores = std::max(1u, std::thread::hardware_concurrency());
  ASSIGN_OR_RETURN(long long slots, args.GetInt("--slots", 0, 4096, cores));
  options.slots = static_cast<int>(slots);
  std::string gpus = args.Get("--gpus", "auto");
  if (gpus == "auto") {
    options.gpus = worker::DetectGpus();
  } else {
    ASSIGN_OR_RETURN(long long count, ParseInteger(gpus, "--gpus", 0, 4096));
    options.gpus = static_cast<int>(count);
  }
  namespace fs = std::filesystem;
  options.work_dir = args.Get("--work-dir", "vitscale-agent-" + options.host);
  std::error_code ec;
  fs::create_directories(options.work_dir, ec);
  if (ec) return InvalidArgument("--work-dir " + options.work_dir + ": " + ec.message());
  fs::permissions(options.work_dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  if (ec) return InvalidArgument("--work-dir " + options.work_dir + ": " + ec.message());
  options.work_dir = fs::absolute(options.work_dir).lexically_normal().string();
  if (args.Has("--runs-dir")) {
    options.runs_dir = fs::absolute(args.Get("--runs-dir")).lexically_normal().string();
  }
  options.train_command = args.Get("--train-command", DefaultTrainCommand());
  options.mpirun = args.Get("--mpirun", "mpirun");
  options.allow_run_as_root = ::geteuid() == 0;
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  CommandLine line = ParseCommandLine(argc, argv, "vitscale-agent", kUsage, kFlags);
  if (line.exit_code >= 0) return line.exit_code;
  // Specs (with their report tokens), logs and checkpoints: readable by the owner only.
  ::umask(077);
  Expected<worker::AgentOptions> options = OptionsFrom(line.args);
  if (!options.ok()) {
    std::fprintf(stderr, "vitscale-agent: %s\n", options.status().message().c_str());
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
