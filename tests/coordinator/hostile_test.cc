// The bad-input table (issue 10): hostile requests across every route and every message —
// malformed, oversized, wrong types, out-of-range integers, invalid UTF-8 and control
// characters in every string field, traversal in every path-like field, missing and wrong
// credentials of each scope on every route — sent to the real vitscale-coordinator. Each must
// get a 4xx whose error names the problem; afterwards the database is byte-for-byte what it was,
// the server still answers, and its memory stayed bounded (the figures are printed).
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>

#include "common/text.h"
#include "tests/coordinator/cluster.h"

namespace vitscale::testing {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr char kSweep[] = R"(name: hostile
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

enum class Who { kNone, kGarbage, kAdmin, kAgentA, kAgentB, kReport, kOtherReport };

struct Case {
  std::string method;
  std::string target;
  Who who = Who::kAdmin;
  std::string body;
  int status = 400;      // the status wanted; 0 = any 4xx
  std::string mention;   // a piece of the error message that names the problem ("" = none)
  std::string content_type = "application/json";
};

// The resident set of a process, in KiB.
long RssKib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

// Every row of every table, as text: the database's content, for before/after comparisons.
std::string Snapshot(const std::string& db_path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) return "";
  std::string out;
  std::vector<std::string> tables;
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db, "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name", -1,
                     &stmt, nullptr);
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
  }
  sqlite3_finalize(stmt);
  for (const std::string& table : tables) {
    out += "## " + table + "\n";
    sqlite3_prepare_v2(db, ("SELECT * FROM " + table + " ORDER BY 1, 2").c_str(), -1, &stmt,
                       nullptr);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
        const unsigned char* text = sqlite3_column_text(stmt, i);
        out += text ? reinterpret_cast<const char*>(text) : "NULL";
        out += "|";
      }
      out += "\n";
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return out;
}

// Waits (up to 10 s) until no pending job of the database at `db_path` has an open attempt: a
// lease's job row is written a second after its attempt (docs/scheduling.md), and a snapshot
// taken before that write would see the coordinator's own tick as a change.
bool WaitForLeaseRows(const std::string& db_path) {
  return WaitFor(
      [&] {
        return DbRows(db_path,
                      "SELECT count(*) FROM jobs WHERE state = 'pending' AND EXISTS "
                      "(SELECT 1 FROM attempts WHERE job_id = jobs.id AND ended_at IS NULL)") ==
               "0";
      },
      std::chrono::seconds(10));
}

// Raw bytes to the server; the status of its answer (0 if none came).
int RawStatus(int port, const std::string& bytes) {
  asio::io_context io;
  tcp::socket socket(io);
  boost::system::error_code error;
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)),
                 error);
  if (error) return 0;
  timeval timeout{10, 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  asio::write(socket, asio::buffer(bytes), error);
  char buffer[512];
  size_t n = socket.read_some(asio::buffer(buffer), error);
  std::string reply(buffer, n);
  return reply.rfind("HTTP/1.1 ", 0) == 0 ? std::atoi(reply.c_str() + 9) : 0;
}

std::string Big(size_t bytes) { return std::string(bytes, 'x'); }

// JSON text cannot hold invalid UTF-8, so a value that should be invalid UTF-8 is written as this
// marker and replaced by raw bytes in the text.
constexpr char kBadUtf8[] = "BAD-UTF8-MARKER";
std::string BodyText(const json& body) {
  std::string text = body.dump();
  for (size_t at; (at = text.find(kBadUtf8)) != std::string::npos;) {
    text.replace(at, std::strlen(kBadUtf8), "\xff\xfe");
  }
  return text;
}

class HostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    coordinator_ = std::make_unique<Coordinator>(dir_.File("state"), std::vector<std::string>{});
    ASSERT_TRUE(coordinator_->Start());
    admin_ = coordinator_->Client(true);
    std::vector<std::string> ids = SubmitSweep(*admin_, kSweep);
    ASSERT_EQ(ids.size(), 2u);
    agent_a_token_ = coordinator_->IssueAgentToken("host-a");
    agent_b_token_ = coordinator_->IssueAgentToken("host-b");
    launch_a_ = TakeJob("host-a", agent_a_token_);
    launch_b_ = TakeJob("host-b", agent_b_token_);
    ASSERT_TRUE(launch_a_.is_object() && launch_b_.is_object());
    job_ = launch_a_["job"];
    other_job_ = launch_b_["job"];
    report_token_ = launch_a_["spec"]["run"]["report_token"];
    other_report_token_ = launch_b_["spec"]["run"]["report_token"];
    run_dir_ = launch_a_["spec"]["run"]["dir"];
  }

  json TakeJob(const std::string& host, const std::string& token) {
    auto agent = coordinator_->ClientWithToken(token);
    HttpReply registered = Call(*agent, "POST", "/api/v1/agents/register",
                                json{{"host", host}, {"slots", 1}, {"gpus", 0}}.dump());
    EXPECT_EQ(registered.status, 200) << registered.body;
    for (int i = 0; i < 5; ++i) {
      HttpReply polled =
          Call(*agent, "POST", "/api/v1/agents/" + host + "/poll", R"({"running": []})");
      json launch = JsonOf(polled).value("launch", json::array());
      if (!launch.empty()) return launch[0];
    }
    return nullptr;
  }

  std::string TokenOf(Who who) const {
    switch (who) {
      case Who::kNone: return "";
      case Who::kGarbage: return "not-a-token-of-this-coordinator";
      case Who::kAdmin: return coordinator_->token();
      case Who::kAgentA: return agent_a_token_;
      case Who::kAgentB: return agent_b_token_;
      case Who::kReport: return report_token_;
      case Who::kOtherReport: return other_report_token_;
    }
    return "";
  }

  // The whole table; see the file comment.
  std::vector<Case> Table() const;

  TempDir dir_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<HttpClient> admin_;
  std::string agent_a_token_, agent_b_token_, report_token_, other_report_token_;
  json launch_a_, launch_b_;
  std::string job_, other_job_, run_dir_;
};

std::vector<Case> HostileTest::Table() const {
  std::vector<Case> t;
  const std::string job = "/api/v1/jobs/" + job_;
  const std::string attempt = job + "/attempts/1";
  const std::string poll = "/api/v1/agents/host-a/poll";
  const std::string reg = "/api/v1/agents/register";
  const std::string exits = "/api/v1/agents/host-a/exits";
  const json exit_batch = {
      {"exits", json::array({{{"job", job_}, {"attempt", 1}, {"outcome", "failed"},
                              {"exit_status", 1}}})}};
  const std::string bad_utf8 = "\xff\xfe";  // in a URL or a YAML body
  const std::string bad = kBadUtf8;         // in a JSON value (BodyText)
  const std::string control = "a\x01" "b";

  // --- 1. Missing and wrong credentials of each scope, on every route. -----------------------
  struct Route {
    std::string method, target, body;
    std::vector<Who> refused;  // credentials that must not open it (plus none and garbage)
    int wrong_scope_status;    // 403 for a valid credential of another scope
  };
  const std::vector<Who> not_admin = {Who::kAgentA, Who::kReport};
  const std::vector<Route> routes = {
      {"GET", "/api/v1/health", "", not_admin, 403},
      {"GET", "/api/v1/sweeps", "", not_admin, 403},
      {"POST", "/api/v1/sweeps", kSweep, not_admin, 403},
      {"GET", "/api/v1/sweeps/hostile", "", not_admin, 403},
      {"GET", "/api/v1/jobs", "", not_admin, 403},
      {"GET", job, "", not_admin, 403},
      {"GET", job + "/metrics", "", not_admin, 403},
      {"GET", job + "/logs", "", not_admin, 403},
      {"GET", job + "/inspection", "", not_admin, 403},
      {"GET", job + "/inspection/attention-distance.json", "", not_admin, 403},
      {"POST", job + "/cancel", "", not_admin, 403},
      {"POST", job + "/preempt", "", not_admin, 403},
      {"POST", job + "/priority", R"({"priority": 5})", not_admin, 403},
      {"GET", "/api/v1/agents", "", not_admin, 403},
      {"POST", "/api/v1/agents/credentials", R"({"host": "h9"})", not_admin, 403},
      {"DELETE", "/api/v1/agents/credentials/host-a", "", not_admin, 403},
      {"GET", "/api/v1/cluster/utilisation", "", not_admin, 403},
      {"GET", "/api/v1/study/hostile", "", not_admin, 403},
      {"GET", "/api/v1/study/hostile/rows", "", not_admin, 403},
      {"GET", "/api/v1/export?sweep=hostile", "", not_admin, 403},
      {"GET", "/api/v1/throughput", "", not_admin, 403},
      {"POST", "/api/v1/throughput", R"({"rows": []})", not_admin, 403},
      {"GET", "/api/v1/study/hostile/fits", "", not_admin, 403},
      {"GET", "/api/v1/sweeps/hostile/timeline", "", not_admin, 403},
      {"POST", reg, R"({"host": "host-a", "slots": 9, "gpus": 0})", {Who::kAdmin, Who::kReport}, 403},
      {"POST", poll, R"({"running": []})", {Who::kAdmin, Who::kAgentB, Who::kReport}, 403},
      {"POST", exits, exit_batch.dump(), {Who::kAdmin, Who::kAgentB, Who::kReport}, 403},
      {"POST",
       attempt + "/metrics",
       R"({"points": [{"step": 1, "name": "l", "value": 1}]})",
       {Who::kAdmin, Who::kAgentA},
       403},
      {"POST", attempt + "/results", R"({"results": []})", {Who::kAdmin, Who::kAgentA}, 403},
      {"POST",
       attempt + "/checkpoints",
       json{{"step", 1}, {"path", run_dir_ + "/c"}, {"sha256", std::string(64, 'a')}}.dump(),
       {Who::kAdmin, Who::kAgentA},
       403},
      {"POST",
       attempt + "/phase",
       R"({"phase": "inspection", "index": 0, "count": 0, "detail": ""})",
       {Who::kAdmin, Who::kAgentA},
       403},
  };
  for (const Route& r : routes) {
    t.push_back({r.method, r.target, Who::kNone, r.body, 401, "credential"});
    t.push_back({r.method, r.target, Who::kGarbage, r.body, 401, "token"});
    for (Who who : r.refused) {
      // A report token is no credential anywhere else: to them it is just a wrong token.
      int want = who == Who::kReport ? 401 : r.wrong_scope_status;
      t.push_back({r.method, r.target, who, r.body, want,
                   who == Who::kAgentB ? "cannot act for" : "needs"});
    }
  }
  // The other attempt's report token, and the agent B credential, on A's routes.
  for (const char* what : {"/metrics", "/results", "/checkpoints", "/phase"}) {
    t.push_back({"POST", attempt + what, Who::kOtherReport, "{}", 401, "token"});
  }
  t.push_back({"POST", "/api/v1/agents/host-b/exits", Who::kAgentA, exit_batch.dump(), 403,
               "cannot act for agent 'host-b'"});
  t.push_back({"POST", reg, Who::kAgentA, R"({"host": "host-b", "slots": 1, "gpus": 0})", 403,
               "host-b"});
  // Query tokens open the event stream only.
  t.push_back({"GET", "/api/v1/jobs?access_token=" + coordinator_->token(), Who::kNone, "", 401,
               "event stream only"});
  t.push_back({"GET", "/api/v1/jobs", Who::kNone, "", 401, "credential"});

  // --- 2. Malformed JSON and wrong shapes, on every JSON route. -----------------------------
  struct JsonRoute {
    std::string target;
    Who who;
  };
  const std::vector<JsonRoute> json_routes = {
      {reg, Who::kAgentA},
      {poll, Who::kAgentA},
      {exits, Who::kAgentA},
      {attempt + "/metrics", Who::kReport},
      {attempt + "/results", Who::kReport},
      {attempt + "/checkpoints", Who::kReport},
      {attempt + "/phase", Who::kReport},
      {job + "/priority", Who::kAdmin},
      {"/api/v1/agents/credentials", Who::kAdmin},
  };
  for (const JsonRoute& r : json_routes) {
    for (const std::string& body :
         {std::string(""), std::string("{"), std::string("not json"), std::string("[1, 2]"),
          std::string("\"a string\""), std::string("{\"a\": }"), std::string("nul"),
          std::string(100, '[') + std::string(100, ']'), std::string("{\"x\": 1} trailing")}) {
      t.push_back({"POST", r.target, r.who, body, 400, ""});
    }
    t.push_back({"POST", r.target, r.who, "{\"s\": \"" + bad_utf8 + "\"}", 400, "UTF-8"});
    t.push_back({"POST", r.target, r.who, R"({"unknown_field_here": 1})", 400, ""});
  }

  // --- 3. Every field of every message: wrong type, range, text, pattern. --------------------
  auto field_cases = [&](const std::string& target, Who who, const json& good,
                         const std::vector<std::pair<std::string, json>>& bad) {
    for (const auto& [path, value] : bad) {
      json body = good;
      // `path` is "field" or "list[0].field".
      std::smatch m;
      std::string leaf = path;
      json* at = &body;
      if (std::regex_match(path, m, std::regex(R"((\w+)\[0\]\.(\w+))"))) {
        at = &body[m[1].str()][0];
        leaf = m[2];
      }
      if (value.is_discarded()) {
        at->erase(leaf);
      } else {
        (*at)[leaf] = value;
      }
      bool raw_bytes = BodyText(body) != body.dump();  // the server cannot parse it at all
      t.push_back({"POST", target, who, BodyText(body), 400,
                   raw_bytes ? "UTF-8" : path.substr(0, path.find('['))});
    }
  };
  json missing = json::value_t::discarded;
  const json huge = json::parse("18446744073709551616");  // 2^64: beyond every integer
  field_cases(reg, Who::kAgentA, json{{"host", "host-a"}, {"slots", 1}, {"gpus", 0}},
              {{"host", 7},
               {"host", ""},
               {"host", "host a"},
               {"host", "host-a;reboot"},
               {"host", "../etc"},
               {"host", "-h"},
               {"host", std::string(300, 'h')},
               {"host", bad},
               {"host", control},
               {"host", missing},
               {"slots", "1"},
               {"slots", -1},
               {"slots", 4097},
               {"slots", 1.5},
               {"slots", huge},
               {"slots", missing},
               {"gpus", nullptr},
               {"gpus", -3},
               {"gpu_kind", 7},
               {"gpu_kind", control},
               {"gpu_kind", std::string(300, 'k')},
               {"running", json::array({{{"job", std::string(64, 'a')}, {"attempt", 1},
                                         {"gpus", json::array({huge})}}})},
               {"running", json::array({{{"job", std::string(64, 'a')}, {"attempt", 1},
                                         {"gpus", json::array({0, 0})}}})},
               {"running", "h1"},
               {"running", json::array({1})},
               {"running", json::array({{{"job", "nothex"}, {"attempt", 1}}})},
               {"running", json::array({{{"job", std::string(64, 'a')}, {"attempt", 0}}})},
               {"running", json::array({{{"job", std::string(64, 'a')}, {"attempt", huge}}})},
               {"running", json::array({{{"job", std::string(64, 'A')}, {"attempt", 1}}})}});
  field_cases(poll, Who::kAgentA, json{{"running", json::array()}},
              {{"running", json::object()},
               {"running", json::array({{{"job", std::string(64, 'a')}}})},
               {"running", json::array({{{"job", bad}, {"attempt", 1}}})},
               {"running", json::array({{{"job", std::string(64, 'a')}, {"attempt", -7}}})},
               {"running", json::array({{{"job", std::string(64, 'a')}, {"attempt", 1},
                                         {"extra", true}}})}});
  field_cases(exits, Who::kAgentA, exit_batch,
              {{"exits", missing},
               {"exits", json::array()},
               {"exits", "x"},
               {"exits", json::array({1})},
               {"exits", json::array({exit_batch["exits"][0], exit_batch["exits"][0]})},
               {"exits[0].job", missing},
               {"exits[0].job", bad},
               {"exits[0].job", "../../etc"},
               {"exits[0].job", std::string(64, 'A')},
               {"exits[0].attempt", 0},
               {"exits[0].attempt", huge},
               {"exits[0].attempt", "1"},
               {"exits[0].agent", "host-a"},
               {"exits[0].outcome", "exploded"},
               {"exits[0].outcome", 1},
               {"exits[0].outcome", missing},
               {"exits[0].outcome", control},
               {"exits[0].exit_status", -1},
               {"exits[0].exit_status", 99999},
               {"exits[0].exit_status", "0"},
               {"exits[0].exit_status", huge}});
  json point = {{"step", 1}, {"name", "loss"}, {"value", 1.5}};
  field_cases(attempt + "/metrics", Who::kReport, json{{"points", json::array({point})}},
              {{"points", missing},
               {"points", "x"},
               {"points", json::array({"x"})},
               {"points[0].step", -1},
               {"points[0].step", 1.5},
               {"points[0].step", huge},
               {"points[0].step", "1"},
               {"points[0].step", missing},
               {"points[0].name", ""},
               {"points[0].name", "lo ss"},
               {"points[0].name", bad},
               {"points[0].name", control},
               {"points[0].name", std::string(200, 'n')},
               {"points[0].name", "../../x"},
               {"points[0].name", 3},
               {"points[0].value", "1"},
               {"points[0].value", nullptr},
               {"points[0].value", missing},
               {"points[0].time", "yesterday"},
               {"points[0].time", -5},
               {"points[0].unit", "s"}});
  json result = {{"evaluation", "few_shot"}, {"dataset", "digits"}, {"shots", 5},
                 {"seed", 0},                {"metric", "accuracy"}, {"value", 0.5}};
  field_cases(attempt + "/results", Who::kReport, json{{"results", json::array({result})}},
              {{"results", missing},
               {"results[0].evaluation", "zero_shot"},
               {"results[0].evaluation", bad},
               {"results[0].dataset", ""},
               {"results[0].dataset", "a b"},
               {"results[0].dataset", control},
               {"results[0].shots", 0},
               {"results[0].shots", missing},
               {"results[0].shots", huge},
               {"results[0].seed", -1},
               {"results[0].seed", 1.5},
               {"results[0].metric", bad},
               {"results[0].metric", std::string(300, 'm')},
               {"results[0].value", "high"},
               {"ledger", "cheap"},
               {"ledger", json{{"train_flops", -1}}}});
  json ledger = {{"train_flops", 1},  {"eval_flops", 1},     {"images_seen", 1},
                 {"device_kind", "cpu"}, {"device_seconds", 1}, {"wall_seconds", 1}};
  for (const auto& [field, value] :
       std::vector<std::pair<std::string, json>>{{"train_flops", -1},
                                                 {"eval_flops", "1"},
                                                 {"images_seen", huge},
                                                 {"images_seen", -1},
                                                 {"device_kind", ""},
                                                 {"device_kind", bad},
                                                 {"device_kind", std::string(200, 'd')},
                                                 {"device_seconds", nullptr},
                                                 {"wall_seconds", missing}}) {
    json body = {{"results", json::array()}, {"ledger", ledger}};
    if (value.is_discarded()) {
      body["ledger"].erase(field);
    } else {
      body["ledger"][field] = value;
    }
    bool raw_bytes = BodyText(body) != body.dump();
    t.push_back({"POST", attempt + "/results", Who::kReport, BodyText(body), 400,
                 raw_bytes ? "UTF-8" : "ledger." + field});
  }
  field_cases(attempt + "/checkpoints", Who::kReport,
              json{{"step", 1}, {"path", run_dir_ + "/checkpoints/step-1"},
                   {"sha256", std::string(64, 'a')}},
              {{"step", -1},
               {"step", huge},
               {"path", "relative/path"},
               {"path", "/etc/passwd"},
               {"path", run_dir_ + "/../../etc/passwd"},
               {"path", run_dir_ + "/./x"},
               {"path", run_dir_ + "//x"},
               {"path", bad},
               {"path", run_dir_ + "/x\n"},
               {"path", "/" + std::string(5000, 'p')},
               {"sha256", "abc"},
               {"sha256", std::string(64, 'G')},
               {"sha256", missing}});
  field_cases(attempt + "/phase", Who::kReport,
              json{{"phase", "few-shot"}, {"index", 1}, {"count", 2}, {"detail", ""}},
              {{"phase", "warmup"},
               {"phase", 1},
               {"phase", missing},
               {"index", -1},
               {"index", 3},
               {"index", huge},
               {"index", 1.5},
               {"count", "2"},
               {"count", 100001},
               {"count", missing},
               {"detail", bad},
               {"detail", control},
               {"detail", std::string(300, 'd')},
               {"detail", nullptr}});
  field_cases(job + "/priority", Who::kAdmin, json{{"priority", 1}},
              {{"priority", missing},
               {"priority", "high"},
               {"priority", 1000001},
               {"priority", -1000001},
               {"priority", huge},
               {"priority", 2.5},
               {"priority", nullptr}});
  field_cases("/api/v1/agents/credentials", Who::kAdmin, json{{"host", "h9"}},
              {{"host", missing},
               {"host", ""},
               {"host", "h 9"},
               {"host", "h_9"},
               {"host", bad},
               {"host", std::string(64, 'a')},
               {"host", 9}});

  // --- 4. Sweep submissions. -----------------------------------------------------------------
  std::string sweep = kSweep;
  auto sweep_with = [&](const std::string& from, const std::string& to) {
    std::string s = sweep;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  for (const auto& [body, mention] : std::vector<std::pair<std::string, std::string>>{
           {"", ""},
           {"name: [", ""},
           {"just a scalar", ""},
           {sweep_with("name: hostile", "name: ../../etc"), "name"},
           {sweep_with("name: hostile", "name: \"has space\""), "name"},
           {sweep_with("name: hostile", "name: \"\\x01x\""), ""},
           {sweep_with("name: hostile", "name: " + std::string(300, 'n')), "name"},
           {sweep_with("ViT-Mu/7", "ViT-Mu/9"), "ViT-Mu/9"},
           {sweep_with("subset: [256, 512]", "subset: [-5]"), "subset"},
           {sweep_with("subset: [256, 512]", "subset: [99999999999999999999999]"), ""},
           {sweep_with("epochs: 1", "epochs: many"), "epochs"},
           {sweep + "bogus_key: 1\n", "bogus_key"},
           {"name: x\n" + bad_utf8, "UTF-8"},
           {sweep_with("name: hostile", "name: hostile2") + std::string(100, '['), ""},
       }) {
    t.push_back({"POST", "/api/v1/sweeps", Who::kAdmin, body, 400, mention, "application/yaml"});
  }
  // The same name with other jobs: a conflict, not a change.
  t.push_back({"POST", "/api/v1/sweeps", Who::kAdmin,
               sweep_with("subset: [256, 512]", "subset: [128]"), 409, "already exists",
               "application/yaml"});

  // --- 5. Paths and queries. -----------------------------------------------------------------
  for (const std::string& target :
       {std::string("/api/v1/%FF"), std::string("/api/v1/jobs/%C3%28"), std::string("/%FF"),
        std::string("/api/v1/jobs/%00"), std::string("/api/v1/jobs/..%2F..%2Fetc"),
        std::string("/api/v1/jobs/%2e%2e/logs"), std::string("/api/v1/sweeps/a%0Ab"),
        std::string("/api/v1/jobs?state=%FF"), std::string("/api/v1/jobs?x=%"),
        std::string("/api/v1/jobs/%G1"), std::string("/api/v1/" + bad_utf8)}) {
    t.push_back({"GET", target, Who::kAdmin, "", 400, ""});
  }
  for (const std::string& query :
       {std::string("limit=abc"), std::string("limit=0"), std::string("limit=501"),
        std::string("limit=99999999999999999999"), std::string("offset=-1"),
        std::string("subset=1e3"), std::string("state=bogus"), std::string("sort=size"),
        std::string("order=sideways"), std::string("state=" + std::string(2000, 'x'))}) {
    t.push_back({"GET", "/api/v1/jobs?" + query, Who::kAdmin, "", 400, ""});
  }
  for (const std::string& query :
       {std::string("after_step=x"), std::string("after_step=-2"), std::string("limit=0"),
        std::string("limit=100001")}) {
    t.push_back({"GET", job + "/metrics?" + query, Who::kAdmin, "", 400, ""});
  }
  for (const std::string& query :
       {std::string("attempt=../../x"), std::string("attempt=-1"), std::string("attempt=0x1"),
        std::string("tail_bytes=0"), std::string("tail_bytes=999999999999"),
        std::string("attempt=99999999999999999999")}) {
    t.push_back({"GET", job + "/logs?" + query, Who::kAdmin, "", 400, ""});
  }
  t.push_back({"GET", "/api/v1/cluster/utilisation?since=soon", Who::kAdmin, "", 400, "since"});
  t.push_back({"GET", "/api/v1/export", Who::kAdmin, "", 400, "sweep"});
  t.push_back({"GET", "/api/v1/export?sweep=hostile&format=pdf", Who::kAdmin, "", 400, "pdf"});
  t.push_back({"GET", "/api/v1/jobs/abcd", Who::kAdmin, "", 400, "8"});
  t.push_back({"GET", "/api/v1/jobs/" + std::string(65, 'a'), Who::kAdmin, "", 404, "job id"});
  t.push_back({"GET", "/api/v1/jobs/zzzzzzzzzz", Who::kAdmin, "", 404, "job id"});
  t.push_back({"GET", "/api/v1/sweeps/" + std::string(5000, 'q'), Who::kAdmin, "", 404, "unknown"});
  t.push_back({"GET", "/api/v1/study/nope", Who::kAdmin, "", 404, "unknown sweep"});
  t.push_back({"GET", "/api/v1/study/nope/fits", Who::kAdmin, "", 404, "unknown sweep"});
  t.push_back({"GET", "/api/v1/study/nope/rows", Who::kAdmin, "", 404, "unknown sweep"});
  // Study cursors: forged, too long, of the wrong shape; page sizes out of bounds.
  for (const std::string& cursor :
       {std::string("abc"), std::string(5000, 'f'), std::string("7374756479312e312e2d31"),
        std::string("%00"), std::string("73747564793100")}) {
    t.push_back(
        {"GET", "/api/v1/study/hostile/rows?after=" + cursor, Who::kAdmin, "", 400, "'after'"});
    t.push_back(
        {"GET", "/api/v1/study/hostile?before=" + cursor, Who::kAdmin, "", 400, "'before'"});
  }
  t.push_back({"GET", "/api/v1/study/hostile/rows?limit=100000", Who::kAdmin, "", 400, "limit"});
  t.push_back({"GET", "/api/v1/study/hostile/rows?page=all", Who::kAdmin, "", 400, "page"});
  t.push_back({"GET", "/api/v1/study/hostile/fits?column=nope", Who::kAdmin, "", 400, "nope"});
  t.push_back({"GET", "/api/v1/export?sweep=hostile&fits=1&column=nope", Who::kAdmin, "", 400,
               "nope"});
  t.push_back({"GET", "/api/v1/sweeps/nope/timeline", Who::kAdmin, "", 404, "nope"});
  for (const std::string& hosts : {std::string("8:H200"), std::string("99999x8:H200"),
                                   std::string("8x0:H200"), std::string("1x1:cpu,") +
                                   std::string(3000, 'x')}) {
    t.push_back({"GET", "/api/v1/sweeps/hostile/timeline?hosts=" + hosts, Who::kAdmin, "", 400,
                 "HOSTSxDEVICES:KIND"});
  }
  t.push_back({"POST", "/api/v1/throughput", Who::kAdmin, "{}", 400, "rows"});
  t.push_back({"POST", "/api/v1/throughput", Who::kAdmin, "[]", 400, "non-empty"});
  t.push_back({"POST", "/api/v1/throughput", Who::kAdmin,
               R"([{"model": "ViT-Q/3", "device_kind": "H100", "batch_size": 8,
                    "images_per_second": 9}])", 400, "rows[0].model"});
  t.push_back({"POST", "/api/v1/throughput", Who::kAdmin,
               R"({"rows": [{"model": "ViT-B/16", "device_kind": "H100", "batch_size": 8,
                             "images_per_second": "fast"}]})", 400, "images_per_second"});
  t.push_back({"POST", "/api/v1/throughput", Who::kAdmin,
               R"({"rows": [{"model": "ViT-B/16", "device_kind": "H100", "batch_size": 8,
                             "images_per_second": 9, "extra": 1}]})", 400, "extra"});
  t.push_back({"POST", "/api/v1/jobs/" + std::string(64, 'f') + "/cancel", Who::kAdmin, "", 404, ""});
  t.push_back({"POST", job + "/attempts/99/metrics", Who::kReport, "{}", 401, "no attempt 99"});
  t.push_back({"POST", job + "/attempts/-1/metrics", Who::kReport, "{}", 400, "attempt"});
  t.push_back({"POST", job + "/attempts/1x/metrics", Who::kReport, "{}", 400, "attempt"});
  t.push_back({"POST", "/api/v1/jobs/" + job_.substr(0, 10) + "/attempts/1/metrics", Who::kReport,
               "{}", 400, "job id"});
  json too_many = {{"exits", json::array()}};
  for (int i = 1; i <= 4097; ++i) {
    too_many["exits"].push_back({{"job", job_}, {"attempt", i}, {"outcome", "failed"}});
  }
  t.push_back({"POST", exits, Who::kAgentA, too_many.dump(), 400, "at most 4096"});
  t.push_back({"POST", "/api/v1/agents/host-a%2Fx/poll", Who::kAgentA, "{}", 400, ""});
  t.push_back({"DELETE", "/api/v1/agents/credentials/no_such", Who::kAdmin, "", 400, "host"});
  t.push_back({"DELETE", "/api/v1/agents/credentials/nobody", Who::kAdmin, "", 404, "nobody"});
  t.push_back({"GET", "/api/v1/nothing", Who::kAdmin, "", 404, "no route"});
  t.push_back({"DELETE", "/api/v1/jobs", Who::kAdmin, "", 405, "not allowed"});
  t.push_back({"PUT", "/api/v1/sweeps", Who::kAdmin, "x", 405, "not allowed"});

  // --- 6. Sizes: each route's body limit, and lists over their count limit. ------------------
  t.push_back({"POST", job + "/priority", Who::kAdmin, Big(70 << 10), 413, "limit"});
  t.push_back({"POST", "/api/v1/agents/credentials", Who::kAdmin, Big(70 << 10), 413, "limit"});
  t.push_back({"POST", poll, Who::kAgentA, Big(2 << 20), 413, "limit"});
  t.push_back({"POST", attempt + "/checkpoints", Who::kReport, Big(70 << 10), 413, "limit"});
  t.push_back({"POST", attempt + "/phase", Who::kReport, Big(70 << 10), 413, "limit"});
  t.push_back({"POST", attempt + "/results", Who::kReport, Big(5 << 20), 413, "limit"});
  json many = json::array();
  for (int i = 0; i < 4097; ++i) many.push_back({{"job", std::string(64, 'a')}, {"attempt", 1}});
  t.push_back({"POST", poll, Who::kAgentA, json{{"running", many}}.dump(), 400, "at most 4096"});
  std::string points = "{\"points\": [";
  for (int i = 0; i < 100001; ++i) points += (i ? "," : "") + std::string("{}");
  t.push_back({"POST", attempt + "/metrics", Who::kReport, points + "]}", 400, "at most 100000"});
  return t;
}

TEST_F(HostileTest, EveryHostileRequestIsA4xxNamingTheProblemAndChangesNothing) {
  std::string db = dir_.File("state/vitscale.db");
  pid_t pid = coordinator_->process().pid();
  ASSERT_TRUE(WaitForLeaseRows(db)) << "the leases' job rows were not written within 10 s";
  std::string before = Snapshot(db);
  ASSERT_FALSE(before.empty());
  long rss_before = RssKib(pid);
  std::vector<Case> table = Table();
  EXPECT_GE(table.size(), 200u);
  std::map<Who, std::unique_ptr<HttpClient>> clients;
  for (Who who : {Who::kNone, Who::kGarbage, Who::kAdmin, Who::kAgentA, Who::kAgentB, Who::kReport,
                  Who::kOtherReport}) {
    clients[who] = coordinator_->ClientWithToken(TokenOf(who));
  }
  int passed = 0;
  long rss_first_pass = 0;
  constexpr int kPasses = 3;  // the same table again: memory must not grow with it
  for (int pass = 0; pass < kPasses; ++pass) {
    for (const Case& c : table) {
      Expected<HttpReply> reply = clients[c.who]->Request(c.method, c.target, c.body, c.content_type);
      std::string where = c.method + " " + Printable(c.target, 100) + " [" +
                          Printable(c.body, 100) + "]";
      if (!reply.ok()) {
        // The server may close a connection on a body over the limit before it is all sent.
        EXPECT_EQ(c.status, 413) << where << ": " << reply.status().ToString();
        if (c.status == 413) ++passed;
        continue;
      }
      bool ok = c.status == 0 ? reply->status >= 400 && reply->status < 500
                              : reply->status == c.status;
      EXPECT_TRUE(ok) << where << ": wanted " << c.status << ", got " << reply->status << " "
                      << reply->body.substr(0, 300);
      json body = JsonOf(*reply);
      std::string error = body.is_object() ? body.value("error", "") : "";
      EXPECT_FALSE(error.empty()) << where << ": no error message in " << reply->body.substr(0, 200);
      EXPECT_NE(error.find(c.mention), std::string::npos)
          << where << ": the error does not mention '" << c.mention << "': " << error;
      if (ok && !error.empty() && error.find(c.mention) != std::string::npos) ++passed;
    }
    if (pass == 0) rss_first_pass = RssKib(pid);
  }
  // Malformed HTTP itself, raw.
  int port = coordinator_->port();
  for (const std::string& raw :
       {std::string("BREW /api/v1/jobs HTTP/1.1\r\nHost: x\r\n\r\n"),
        std::string("GET /api/v1/\xff HTTP/1.1\r\nHost: x\r\n\r\n"),
        std::string("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
        std::string("POST /api/v1/sweeps HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        std::string("GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX: " + std::string(20000, 'h') +
                    "\r\n\r\n"),
        std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),  // a TLS hello
        std::string("GET noslash HTTP/1.1\r\nHost: x\r\n\r\n")}) {
    int status = RawStatus(port, raw);
    EXPECT_TRUE(status >= 400 && status < 500) << Printable(raw, 80) << ": " << status;
  }
  long rss_after = RssKib(pid);
  std::printf("hostile table: %zu cases x %d passes, %d answered as wanted; coordinator RSS "
              "%ld KiB before, %ld KiB after the first pass, %ld KiB after all\n",
              table.size(), kPasses, passed, rss_before, rss_first_pass, rss_after);
  EXPECT_EQ(passed, static_cast<int>(table.size()) * kPasses);

  // Nothing was written, the server answers, and memory stayed bounded.
  EXPECT_TRUE(coordinator_->process().Running());
  EXPECT_EQ(Call(*admin_, "GET", "/api/v1/health").status, 200);
  EXPECT_EQ(Snapshot(db), before) << "a refused request changed the database";
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer keeps freed memory in quarantine (256 MiB by default), so the resident size
  // of an instrumented coordinator grows with every request; there, LeakSanitizer checks leaks.
  std::printf("memory bounds not checked: an AddressSanitizer build\n");
#else
  EXPECT_LT(rss_after - rss_first_pass, 16 * 1024) << "memory grew with repeated hostile passes";
  EXPECT_LT(rss_after, 256 * 1024);
#endif
}

}  // namespace
}  // namespace vitscale::testing
