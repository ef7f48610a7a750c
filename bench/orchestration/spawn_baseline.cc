// vitscale-spawn-baseline: how fast this machine starts and reaps a program with a given number
// of copies running at once, using nothing but posix_spawn and waitpid. run_throughput.sh prints
// it as the baseline that the orchestrators' job rates are measured against, in the same run.
//
//   vitscale-spawn-baseline --jobs 1000 --concurrency 32 /bin/true [ARGS...]
//
// Prints one line: "jobs=N seconds=S per_second=R". Exit status 1 if any copy fails.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern char** environ;

namespace {

int Usage(const char* why) {
  std::fprintf(stderr,
               "vitscale-spawn-baseline: %s\n"
               "usage: vitscale-spawn-baseline --jobs N --concurrency C PROGRAM [ARGS...]\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  long jobs = 0;
  long concurrency = 0;
  int arg = 1;
  for (; arg + 1 < argc && argv[arg][0] == '-'; arg += 2) {
    char* end = nullptr;
    long value = std::strtol(argv[arg + 1], &end, 10);
    if (*end != '\0' || value < 1) return Usage("--jobs and --concurrency take a number >= 1");
    if (std::strcmp(argv[arg], "--jobs") == 0) {
      jobs = value;
    } else if (std::strcmp(argv[arg], "--concurrency") == 0) {
      concurrency = value;
    } else {
      return Usage((std::string("unknown flag ") + argv[arg]).c_str());
    }
  }
  if (jobs == 0 || concurrency == 0 || arg >= argc) return Usage("missing arguments");
  char** command = argv + arg;

  long started = 0, finished = 0, failed = 0, running = 0;
  const auto start = std::chrono::steady_clock::now();
  while (finished < jobs) {
    while (running < concurrency && started < jobs) {
      pid_t pid = 0;
      int error = posix_spawn(&pid, command[0], nullptr, nullptr, command, environ);
      if (error != 0) {
        std::fprintf(stderr, "vitscale-spawn-baseline: cannot run %s: %s\n", command[0],
                     std::strerror(error));
        return 1;
      }
      ++started;
      ++running;
    }
    int status = 0;
    if (::waitpid(-1, &status, 0) < 0) {
      std::perror("vitscale-spawn-baseline: waitpid");
      return 1;
    }
    --running;
    ++finished;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("jobs=%ld seconds=%.3f per_second=%.1f\n", jobs, seconds,
              static_cast<double>(jobs) / seconds);
  if (failed > 0) {
    std::fprintf(stderr, "vitscale-spawn-baseline: %ld of %ld runs failed\n", failed, jobs);
    return 1;
  }
  return 0;
}
