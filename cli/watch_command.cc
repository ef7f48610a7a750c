// `vitscale watch`: live progress of a sweep (a bar per running job and one for the sweep) or of
// one job, until everything watched has finished.
//
// It polls the job list rather than following the WebSocket event stream: each poll is two
// small requests whatever the sweep's size (the sweep's counts, and the jobs now running), a
// missed or reordered event cannot leave the view wrong, and a coordinator restart needs no
// resynchronisation: the next successful poll shows the truth again. While the coordinator is
// away, watch says so and keeps trying.
#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli/api_client.h"
#include "cli/commands.h"
#include "common/flags.h"
#include "protocol/api.h"

namespace vitscale::cli {
namespace {

using nlohmann::json;

constexpr const char* kWatchUsage =
    "usage: vitscale watch [--sweep NAME | JOB] [--interval SECONDS] [--json]\n"
    "Shows live progress until every job of the sweep (or the one job) has finished; exits 0\n"
    "when all succeeded, else 1. Without --sweep or JOB it watches the only sweep there is.\n"
    "  --interval S        seconds between polls (default 1)\n"
    "  --json              one JSON line per change instead of bars\n";

// The order states are listed in a summary: outcomes first, then what is still to come.
const char* const kStateOrder[] = {"succeeded", "failed",    "cancelled", "running",
                                   "leased",    "preempted", "pending"};

std::string Clock() {
  std::time_t now = std::time(nullptr);
  char text[16];
  std::strftime(text, sizeof(text), "%H:%M:%S", std::localtime(&now));
  return text;
}

std::string Bar(double fraction, int width) {
  fraction = std::min(1.0, std::max(0.0, fraction));
  int filled = static_cast<int>(fraction * width + 0.5);
  return "[" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
}

struct Terminal {
  int columns = 100;
  int rows = 24;
};

Terminal QueryTerminal() {
  Terminal terminal;
  winsize size{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) {
    terminal.columns = size.ws_col;
    terminal.rows = size.ws_row;
  }
  return terminal;
}

// On a terminal, each Draw replaces the lines the previous one drew. Lines are cut to the
// terminal's width: a wrapped line would break the count of lines to move back over.
class Screen {
 public:
  void Draw(const std::vector<std::string>& lines) {
    if (drawn_ > 0 && lines == last_) return;  // unchanged: redrawing would only flicker
    last_ = lines;
    Terminal terminal = QueryTerminal();
    std::string out;
    if (drawn_ > 0) out += fmt::format("\x1b[{}F", drawn_);
    for (const std::string& line : lines) {
      out += line.substr(0, static_cast<size_t>(std::max(1, terminal.columns - 1)));
      out += "\x1b[K\n";
    }
    out += "\x1b[J";
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
    drawn_ = static_cast<int>(lines.size());
  }

 private:
  int drawn_ = 0;
  std::vector<std::string> last_;
};

// What one poll saw.
struct SweepPoll {
  protocol::SweepView summary;                // the sweep's entry, without its definition
  std::vector<protocol::JobSummary> active;  // its leased and running jobs
  int64_t finished = 0;
  int64_t succeeded = 0;
};

Expected<SweepPoll> FetchSweep(ApiClient& api, const std::string& name) {
  ASSIGN_OR_RETURN(json sweep, api.GetJson("/api/v1/sweeps/" + UrlEncode(name)));
  ASSIGN_OR_RETURN(json page, api.GetJson("/api/v1/jobs?sweep=" + UrlEncode(name) +
                                          "&state=leased,running&limit=500"));
  SweepPoll poll;
  ASSIGN_OR_RETURN(poll.summary, FromReply<protocol::SweepView>(sweep));
  poll.summary.definition.reset();
  ASSIGN_OR_RETURN(protocol::JobPage jobs, FromReply<protocol::JobPage>(page));
  poll.active = std::move(jobs.jobs);
  for (const auto& [state, count] : poll.summary.by_state) {
    if (protocol::IsFinalStateName(state)) poll.finished += count;
    if (state == "succeeded") poll.succeeded = count;
  }
  return poll;
}

std::string Counts(const SweepPoll& poll) {
  std::string out = fmt::format("{}/{} finished", poll.finished, poll.summary.jobs);
  for (const char* state : kStateOrder) {
    auto it = poll.summary.by_state.find(state);
    if (it != poll.summary.by_state.end() && it->second > 0) {
      out += fmt::format(", {} {}", it->second, state);
    }
  }
  return out;
}

double SweepFraction(const SweepPoll& poll) {
  if (poll.summary.jobs == 0) return 1.0;
  double done = static_cast<double>(poll.finished);
  for (const protocol::JobSummary& job : poll.active) done += job.progress;
  return done / static_cast<double>(poll.summary.jobs);
}

// The job's state, and while it runs the phase it reported ("running: few-shot 2/6 (digits
// seed 1)"): a job at 100% of its pretraining may have minutes of evaluations ahead.
std::string StateText(const protocol::JobSummary& job) {
  std::string text = protocol::JobStateName(job.state);
  if (job.phase) text += ": " + job.phase->ToString();
  return text;
}

std::string JobLine(const protocol::JobSummary& job) {
  return fmt::format("  {:<12} {:<14} {:<18} {:>7} {} {:>3.0f}% {}", ShortId(job.id), job.model,
                     job.dataset, job.subset_size, Bar(job.progress, 20), job.progress * 100,
                     StateText(job));
}

// Polls `fetch` until `done` says so; `render` shows each view. Returns the last view, or the
// first error that is not the coordinator being away. An away coordinator at the first poll is
// an error too: there is nothing to watch yet.
template <typename View>
Expected<View> PollUntilDone(std::chrono::milliseconds interval,
                             const std::function<Expected<View>()>& fetch,
                             const std::function<bool(const View&)>& done,
                             const std::function<void(const View&, const std::string&)>& render) {
  std::optional<View> last;
  bool away = false;
  while (true) {
    Expected<View> view = fetch();
    if (view.ok()) {
      if (away)
        std::fprintf(stderr, "vitscale watch: %s: the coordinator is back\n", Clock().c_str());
      away = false;
      render(*view, "");
      if (done(*view)) return view;
      last = std::move(*view);
    } else if (view.status().code() == StatusCode::kUnavailable && last) {
      if (!away) {
        std::fprintf(stderr, "vitscale watch: %s: %s; retrying every %.1f s\n", Clock().c_str(),
                     view.status().message().c_str(), interval.count() / 1000.0);
      }
      away = true;
      render(*last, "coordinator unreachable since " + Clock() + "; retrying");
    } else {
      return view.status();
    }
    std::this_thread::sleep_for(interval);
  }
}

int WatchSweep(ApiClient& api, const std::string& name, bool json_lines,
               std::chrono::milliseconds interval) {
  bool tty = !json_lines && ::isatty(STDOUT_FILENO);
  Screen screen;
  std::string last_printed;  // plain and JSON output print only what changed
  std::map<std::string, std::string> job_marks;
  auto render = [&](const SweepPoll& view, const std::string& note) {
    if (json_lines) {
      json active = json::array();
      for (const protocol::JobSummary& job : view.active) active.push_back(job.ToJson());
      json line = {{"sweep", view.summary.ToJson()}, {"active", active}};
      std::string text = line.dump();
      if (text != last_printed) std::printf("%s\n", text.c_str());
      std::fflush(stdout);
      last_printed = text;
      return;
    }
    double fraction = SweepFraction(view);
    std::string head = fmt::format("sweep {} {} {:>3.0f}%  {}", view.summary.name, Bar(fraction, 30),
                                   fraction * 100, Counts(view));
    if (tty) {
      std::vector<std::string> lines = {head};
      size_t room = static_cast<size_t>(std::max(3, QueryTerminal().rows - 4));
      for (size_t i = 0; i < view.active.size() && i < room; ++i) {
        lines.push_back(JobLine(view.active[i]));
      }
      if (view.active.size() > room) {
        lines.push_back(fmt::format("  ... and {} more", view.active.size() - room));
      }
      if (!note.empty()) lines.push_back("  " + note);
      screen.Draw(lines);
      return;
    }
    // Plain lines (a log file, a pipe): a job line when a job starts, passes a tenth of its
    // work or enters a phase, the sweep line when its counts change.
    for (const protocol::JobSummary& job : view.active) {
      std::string mark = fmt::format("{} {}", StateText(job), static_cast<int>(job.progress * 10));
      std::string& seen = job_marks[job.id];
      if (seen != mark) std::printf("%s %s\n", Clock().c_str(), JobLine(job).c_str() + 2);
      seen = mark;
    }
    std::string counts = Counts(view);
    if (counts != last_printed) std::printf("%s %s\n", Clock().c_str(), head.c_str());
    last_printed = counts;
    std::fflush(stdout);
  };
  Expected<SweepPoll> final_view = PollUntilDone<SweepPoll>(
      interval, [&] { return FetchSweep(api, name); },
      [](const SweepPoll& view) { return view.finished >= view.summary.jobs; }, render);
  if (!final_view.ok()) return Fail("watch", final_view.status());
  bool all_succeeded = final_view->succeeded == final_view->summary.jobs;
  if (json_lines) return all_succeeded ? kExitOk : kExitFailure;

  if (all_succeeded) {
    std::printf("sweep %s: all %lld jobs succeeded\n", name.c_str(),
                static_cast<long long>(final_view->summary.jobs));
    return kExitOk;
  }
  std::printf("sweep %s: %s\n", name.c_str(), Counts(*final_view).c_str());
  Expected<json> unlucky =
      api.GetJson("/api/v1/jobs?sweep=" + UrlEncode(name) + "&state=failed,cancelled&limit=20");
  Expected<protocol::JobPage> page =
      unlucky.ok() ? FromReply<protocol::JobPage>(*unlucky) : Expected<protocol::JobPage>(unlucky.status());
  if (page.ok()) {
    for (const protocol::JobSummary& job : page->jobs) {
      std::string id = ShortId(job.id);
      std::printf("  %-9s %s %s  (vitscale show %s; vitscale logs %s)\n",
                  protocol::JobStateName(job.state), id.c_str(), job.model.c_str(), id.c_str(),
                  id.c_str());
    }
  }
  return kExitFailure;
}

int WatchJob(ApiClient& api, const std::string& id, bool json_lines,
             std::chrono::milliseconds interval) {
  bool tty = !json_lines && ::isatty(STDOUT_FILENO);
  Screen screen;
  std::string last_printed;
  auto render = [&](const protocol::JobDetail& detail, const std::string& note) {
    const protocol::JobSummary& job = detail.summary;
    std::string text;
    if (json_lines) {
      text = job.ToJson().dump();
    } else {
      text = JobLine(job).substr(2);
      if (tty) {
        std::vector<std::string> lines = {text};
        if (!note.empty()) lines.push_back("  " + note);
        screen.Draw(lines);
        return;
      }
      // Plain output: a line per state or phase change or tenth of progress.
      std::string mark = fmt::format("{} {}", StateText(job), static_cast<int>(job.progress * 10));
      if (mark == last_printed) return;
      last_printed = mark;
      std::printf("%s %s\n", Clock().c_str(), text.c_str());
      std::fflush(stdout);
      return;
    }
    if (text != last_printed) std::printf("%s\n", text.c_str());
    std::fflush(stdout);
    last_printed = text;
  };
  Expected<protocol::JobDetail> final_job = PollUntilDone<protocol::JobDetail>(
      interval,
      [&]() -> Expected<protocol::JobDetail> {
        ASSIGN_OR_RETURN(json reply, api.GetJson("/api/v1/jobs/" + UrlEncode(id)));
        return FromReply<protocol::JobDetail>(reply);
      },
      [](const protocol::JobDetail& job) { return protocol::IsFinal(job.summary.state); }, render);
  if (!final_job.ok()) return Fail("watch", final_job.status());
  return final_job->summary.state == protocol::JobState::kSucceeded ? kExitOk : kExitFailure;
}

}  // namespace

int RunWatch(const Args& raw) {
  Invocation call =
      StartCommand("watch", raw, {{"--sweep", true}, {"--interval", true}, {"--json", false}},
                   kWatchUsage, 0, 1);
  if (call.exit_code >= 0) return call.exit_code;
  const ParsedArgs& args = call.args;
  double seconds = 1.0;
  if (args.Has("--interval")) {
    char* end = nullptr;
    std::string text = args.Get("--interval");
    seconds = std::strtod(text.c_str(), &end);
    if (*end != '\0' || !(seconds >= 0.05 && seconds <= 3600)) {
      return UsageError("watch", "--interval must be seconds within 0.05..3600, not '" + text + "'",
                        kWatchUsage);
    }
  }
  auto interval = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  bool json_lines = args.Has("--json");
  if (!args.positional.empty()) {
    if (args.Has("--sweep"))
      return UsageError("watch", "give --sweep NAME or JOB, not both", kWatchUsage);
    return WatchJob(*call.api, args.positional[0], json_lines, interval);
  }
  std::string sweep = args.Get("--sweep");
  if (sweep.empty()) {
    Expected<json> sweeps = call.api->GetJson("/api/v1/sweeps");
    if (!sweeps.ok()) return Fail("watch", sweeps.status());
    Expected<protocol::SweepList> list = FromReply<protocol::SweepList>(*sweeps);
    if (!list.ok()) return Fail("watch", list.status());
    std::vector<std::string> names;
    for (const protocol::SweepView& s : list->sweeps) names.push_back(s.name);
    if (names.size() != 1) {
      std::string list;
      for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
      return UsageError("watch",
                        names.empty() ? "the coordinator has no sweeps; submit one first"
                                      : "name the sweep to watch with --sweep: " + list,
                        kWatchUsage);
    }
    sweep = names.front();
  }
  return WatchSweep(*call.api, sweep, json_lines, interval);
}

}  // namespace vitscale::cli
