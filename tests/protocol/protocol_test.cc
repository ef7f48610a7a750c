// The typed protocol: every decoder is strict, names the field it refuses, never throws, and
// reads back what the encoder wrote.
#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "protocol/agent.h"
#include "protocol/api.h"
#include "protocol/reports.h"

namespace vitscale::protocol {
namespace {

const std::string kJob(64, 'a');

// The message of a decode failure (the test fails if it decoded).
template <typename T>
std::string ErrorOf(const std::string& text) {
  Expected<T> decoded = Decode<T>(text);
  EXPECT_FALSE(decoded.ok()) << text;
  if (decoded.ok()) return "";
  EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
  return decoded.status().message();
}

TEST(ProtocolTest, MetricBatchRefusalsNameTheField) {
  EXPECT_EQ(ErrorOf<MetricBatch>(R"({"points": [{"step": 1, "name": "loss", "value": 1},
                                                {"step": 2, "name": "loss", "value": "x"}]})"),
            "points[1].value: expected a number, got a string");
  EXPECT_EQ(ErrorOf<MetricBatch>(R"({"points": [{"step": 1.5, "name": "loss", "value": 1}]})"),
            "points[0].step: expected an integer within 0..1125899906842624, got a number with a "
            "fraction");
  EXPECT_EQ(ErrorOf<MetricBatch>(R"({"points": [{"step": 18446744073709551615, "name": "l",
                                                 "value": 1}]})"),
            "points[0].step: expected an integer within 0..1125899906842624, got "
            "18446744073709551615");
  EXPECT_EQ(ErrorOf<MetricBatch>(R"({"points": [{"step": -1, "name": "l", "value": 1}]})"),
            "points[0].step: expected an integer within 0..1125899906842624, got -1");
  // The parser keeps every integer >= 0 unsigned: the lower bound holds for those too.
  EXPECT_EQ(ErrorOf<PollRequest>(R"({"running": [{"job": ")" + kJob + R"(", "attempt": 0}]})"),
            "running[0].attempt: expected an integer within 1..1000000, got 0");
  EXPECT_EQ(ErrorOf<MetricBatch>(R"({"points": [{"step": 1, "value": 1}]})"),
            "points[0].name: is missing");
  EXPECT_NE(ErrorOf<MetricBatch>(R"({"points": [{"step": 1, "name": "lo ss", "value": 1}]})")
                .find("points[0].name: 'lo ss' is not a name"),
            std::string::npos);
  EXPECT_EQ(ErrorOf<MetricBatch>(R"({"points": [{"step": 1, "name": "l", "valeu": 1}]})"),
            "points[0].value: is missing");
  EXPECT_EQ(ErrorOf<MetricBatch>(R"({"points": {}})"), "points: expected an array, got an object");
  EXPECT_EQ(ErrorOf<MetricBatch>(R"([1])"), "the body: expected a JSON object, got an array");
}

TEST(ProtocolTest, RequestsRefuseUnknownFieldsAndRepliesIgnoreThem) {
  std::string message = ErrorOf<RegisterRequest>(
      R"({"host": "h1", "slots": 1, "gpus": 0, "slot": 2})");
  EXPECT_EQ(message, "slot: is not a field of this message; did you mean 'slots'?");
  Expected<RegisterReply> reply = Decode<RegisterReply>(
      R"({"agent": "h1", "lease_seconds": 30, "not_held": [], "added_later": {"x": 1}})");
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->agent, "h1");
}

TEST(ProtocolTest, StringsAreUtf8WithoutControlCharactersAndBounded) {
  // nlohmann refuses invalid UTF-8 in JSON text itself; a decoder refuses it in a value built
  // otherwise, and control characters and lengths always.
  Json value = {{"host", "h1"}, {"slots", 1}, {"gpus", 0}};
  value["host"] = std::string("h\xff", 2);
  EXPECT_NE(RegisterRequest::FromJson(value, "").status().message().find("host: is not valid UTF-8"),
            std::string::npos);
  value["host"] = "h\n1";
  EXPECT_NE(RegisterRequest::FromJson(value, "").status().message().find("control character"),
            std::string::npos);
  EXPECT_NE(ErrorOf<RegisterRequest>("{\"host\": \"h\xc3\x28\", \"slots\": 1, \"gpus\": 0}")
                .find("malformed JSON"),
            std::string::npos);
  std::string long_name(300, 'a');
  EXPECT_NE(ErrorOf<MetricBatch>(R"({"points": [{"step": 1, "name": ")" + long_name +
                                 R"(", "value": 1}]})")
                .find("is 300 bytes long; at most 128"),
            std::string::npos);
}

TEST(ProtocolTest, HostNamesFollowRfc1123) {
  for (const char* good : {"h1", "host-a", "node7.lab.example", "A1"}) {
    EXPECT_TRUE(CheckText("host", good, kHostRule).ok()) << good;
  }
  for (const char* bad : {"", "-h", "h-", "h_1", "h 1", "h:1", "h,1", "h/1", "a..b", ".a", "a.",
                          "$(reboot)", "h;ls", "--oversubscribe"}) {
    EXPECT_FALSE(CheckText("host", bad, kHostRule).ok()) << bad;
  }
  EXPECT_FALSE(CheckText("host", std::string(64, 'a'), kHostRule).ok());  // a label over 63
}

TEST(ProtocolTest, PathsAreAbsoluteWithoutDotSegments) {
  EXPECT_TRUE(CheckText("p", "/runs/abc/checkpoints/step-1", kPathRule).ok());
  for (const char* bad : {"runs/x", "/runs/../etc", "/runs/./x", "/a//b", "", "/a/.."}) {
    EXPECT_FALSE(CheckText("p", bad, kPathRule).ok()) << bad;
  }
}

TEST(ProtocolTest, DeepNestingIsRefusedBeforeParsing) {
  std::string deep(100000, '[');
  EXPECT_NE(ParseJson(deep).status().message().find("deeper than 32"), std::string::npos);
  std::string in_string = "{\"a\": \"" + std::string(100, '[') + "\"}";
  EXPECT_TRUE(ParseJson(in_string).ok());
}

TEST(ProtocolTest, DumpNeverThrowsOnBadUtf8) {
  Json value = {{"error", std::string("no route /api/v1/\xff", 18)}};
  EXPECT_EQ(Dump(value), "{\"error\":\"no route /api/v1/\xEF\xBF\xBD\"}");
}

TEST(ProtocolTest, LaunchEntriesCheckTheirHosts) {
  LaunchEntry launch;
  launch.job = kJob;
  launch.attempt = 2;
  launch.ranks = 4;
  launch.hosts = {{"host-a", 2}, {"host-b", 2}};
  launch.grace_seconds = 30;
  launch.log = "/runs/" + kJob + "/attempt-2.log";
  launch.spec = {{"job", Json::object()}, {"run", Json::object()}};
  PollReply reply;
  reply.launch = {launch};
  reply.signal = {{kJob, 1, SignalAction::kPreempt, 30}, {kJob, 2, SignalAction::kKill, {}}};
  Expected<PollReply> back = Decode<PollReply>(Dump(reply.ToJson()));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->launch[0].hosts, launch.hosts);
  EXPECT_EQ(back->launch[0].log, launch.log);
  EXPECT_EQ(back->signal[1].action, SignalAction::kKill);
  EXPECT_EQ(back->signal[1].attempt, 2);
  Json no_attempt = reply.ToJson();
  no_attempt["signal"][1].erase("attempt");
  EXPECT_NE(PollReply::FromJson(no_attempt, "").status().message().find("signal[1].attempt"),
            std::string::npos);

  Json bad = reply.ToJson();
  bad["launch"][0]["hosts"] = "host-a:2,evil host:2";
  EXPECT_NE(PollReply::FromJson(bad, "").status().message().find("launch[0].hosts[1].host"),
            std::string::npos);
  bad["launch"][0]["hosts"] = "host-a:3,host-b:2";
  EXPECT_NE(PollReply::FromJson(bad, "").status().message().find("places 5 ranks"),
            std::string::npos);
  bad["launch"][0]["hosts"] = "host-a:2,host-b:2";
  bad["launch"][0]["log"] = "/runs/../../etc/cron.d/x";
  EXPECT_NE(PollReply::FromJson(bad, "").status().message().find("launch[0].log"),
            std::string::npos);
}

// GPUs in the agent messages: a host that offers GPUs names their kind; indices are whole
// numbers, each once; a leader's launch names every host of its gang, in order, with its GPUs.
TEST(ProtocolTest, GpuFieldsAreCheckedWhereTheyCrossTheBoundary) {
  Expected<RegisterRequest> h200 = Decode<RegisterRequest>(
      R"({"host": "g1", "slots": 8, "gpus": 2, "gpu_kind": "NVIDIA H200",
          "running": [{"job": ")" + std::string(64, 'a') + R"(", "attempt": 1, "gpus": [1, 0]}]})");
  ASSERT_TRUE(h200.ok()) << h200.status().ToString();
  EXPECT_EQ(h200->gpu_kind, "NVIDIA H200");
  EXPECT_EQ(h200->running.at(0).gpus, (std::vector<int>{1, 0}));
  EXPECT_EQ(Decode<RegisterRequest>(Dump(h200->ToJson()))->ToJson(), h200->ToJson());
  EXPECT_EQ(ErrorOf<RegisterRequest>(R"({"host": "g1", "slots": 8, "gpus": 2})"),
            "gpu_kind: is required when 'gpus' > 0: the GPUs' model, as \"NVIDIA H200\"");
  EXPECT_NE(ErrorOf<RegisterRequest>(R"({"host": "g1", "slots": 8, "gpus": 2, "gpu_kind": "cpu"})")
                .find("gpu_kind: 'cpu' is the kind of CPU slots"),
            std::string::npos);
  // Without GPUs the kind is not sent, and a CPU host's message is as before.
  RegisterRequest cpu_host{"c1", 2, 0, "", {}, std::nullopt};
  EXPECT_EQ(cpu_host.ToJson(),
            (Json{{"host", "c1"}, {"slots", 2}, {"gpus", 0}, {"running", Json::array()}}));
  std::string job = std::string(64, 'b');
  EXPECT_EQ(ErrorOf<PollRequest>(R"({"running": [{"job": ")" + job +
                                 R"(", "attempt": 1, "gpus": [0, 0]}]})"),
            "running[0].gpus: names GPU 0 twice");
  EXPECT_EQ(ErrorOf<PollRequest>(R"({"running": [{"job": ")" + job +
                                 R"(", "attempt": 1, "gpus": [-1]}]})"),
            "running[0].gpus[0]: expected a whole number within 0..4095, got -1");
  EXPECT_EQ(ErrorOf<PollRequest>(R"({"running": [{"job": ")" + job +
                                 R"(", "attempt": 1, "gpus": [1.5]}]})"),
            "running[0].gpus[0]: expected a whole number within 0..4095, got 1.5");

  Json launch = {{"job", job},    {"attempt", 1},       {"ranks", 3},
                 {"hosts", "a:2,b:1"}, {"grace_seconds", 5}, {"log", "/r/x.log"},
                 {"spec", Json::object()},
                 {"gpus", {{{"host", "a"}, {"gpus", {0, 1}}}, {{"host", "b"}, {"gpus", {3}}}}}};
  Expected<LaunchEntry> leader = LaunchEntry::FromJson(launch, "launch[0]");
  ASSERT_TRUE(leader.ok()) << leader.status().ToString();
  EXPECT_EQ(leader->gpus, (std::vector<HostGpus>{{"a", {0, 1}}, {"b", {3}}}));
  EXPECT_EQ(LaunchEntry::FromJson(leader->ToJson(), "")->gpus, leader->gpus);
  launch["gpus"] = {{{"host", "b"}, {"gpus", {3}}}, {{"host", "a"}, {"gpus", {0, 1}}}};
  EXPECT_EQ(LaunchEntry::FromJson(launch, "launch[0]").status().message(),
            "launch[0].gpus: must name the hosts of 'hosts', in the same order");
  launch["gpus"] = {{{"host", "a"}, {"gpus", Json::array()}}, {{"host", "b"}, {"gpus", {3}}}};
  EXPECT_EQ(LaunchEntry::FromJson(launch, "launch[0]").status().message(),
            "launch[0].gpus[0].gpus: is empty");
  Json hold = {{"job", job}, {"attempt", 1}, {"hold", true},
               {"gpus", {{{"host", "b"}, {"gpus", {3}}}}}};
  EXPECT_EQ(LaunchEntry::FromJson(hold, "")->gpus, (std::vector<HostGpus>{{"b", {3}}}));
  EXPECT_EQ(GpuIndicesString({2, 3}), "2,3");
}

TEST(ProtocolTest, ResultsNeedShotsExactlyForFewShot) {
  EXPECT_EQ(ErrorOf<ResultsReport>(R"({"results": [{"evaluation": "few_shot", "dataset": "d",
                                                    "metric": "accuracy", "value": 0.5}]})"),
            "results[0].shots: few_shot results need shots");
  EXPECT_EQ(ErrorOf<ResultsReport>(R"({"results": [], "ledger": {"train_flops": 1,
      "eval_flops": 1, "images_seen": -5, "device_kind": "cpu", "device_seconds": 1,
      "wall_seconds": 1}})"),
            "ledger.images_seen: expected an integer within 0..4611686018427387904, got -5");
  EXPECT_EQ(ErrorOf<ResultsReport>(R"({"results": [{"evaluation": "zero_shot", "dataset": "d",
                                                    "metric": "accuracy", "value": 0.5}]})"),
            "results[0].evaluation: unknown evaluation 'zero_shot'; use one of: pretrain, "
            "few_shot, fine_tune");
}

TEST(ProtocolTest, PhaseReportsAreStrict) {
  Expected<PhaseReport> few_shot = Decode<PhaseReport>(
      R"({"phase": "few-shot", "index": 2, "count": 6, "detail": "digits seed 1"})");
  ASSERT_TRUE(few_shot.ok()) << few_shot.status().ToString();
  EXPECT_EQ(few_shot->phase, JobPhase::kFewShot);
  EXPECT_EQ(few_shot->ToString(), "few-shot 2/6 (digits seed 1)");
  Expected<PhaseReport> back = Decode<PhaseReport>(Dump(few_shot->ToJson()));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->ToString(), few_shot->ToString());
  Expected<PhaseReport> pretraining =
      Decode<PhaseReport>(R"({"phase": "pretraining", "index": 0, "count": 0, "detail": ""})");
  ASSERT_TRUE(pretraining.ok()) << pretraining.status().ToString();
  EXPECT_EQ(pretraining->ToString(), "pretraining");

  EXPECT_EQ(ErrorOf<PhaseReport>(R"({"phase": "warmup", "index": 0, "count": 0, "detail": ""})"),
            "phase: unknown job phase 'warmup'; use one of: pretraining, few-shot, fine-tune, "
            "inspection");
  EXPECT_EQ(ErrorOf<PhaseReport>(R"({"phase": "fine-tune", "index": 5, "count": 4,
                                     "detail": ""})"),
            "index: must be between 1 and count (4), not 5");
  EXPECT_EQ(ErrorOf<PhaseReport>(R"({"phase": "fine-tune", "index": 0, "count": 4,
                                     "detail": ""})"),
            "index: must be between 1 and count (4), not 0");
  EXPECT_EQ(ErrorOf<PhaseReport>(R"({"phase": "inspection", "index": 1, "count": 0,
                                     "detail": ""})"),
            "index: must be 0 for a phase without parts (count 0)");
  EXPECT_EQ(ErrorOf<PhaseReport>(R"({"phase": "inspection", "index": -1, "count": 0,
                                     "detail": ""})"),
            "index: expected an integer within 0..100000, got -1");
  EXPECT_EQ(ErrorOf<PhaseReport>(R"({"phase": "inspection", "index": 0, "count": 0})"),
            "detail: is missing");
  EXPECT_NE(ErrorOf<PhaseReport>(R"({"phase": "inspection", "index": 0, "count": 0,
                                     "detail": "", "step": 3})")
                .find("step: is not a field of this message"),
            std::string::npos);
  EXPECT_NE(ErrorOf<PhaseReport>(R"({"phase": "inspection", "index": 0, "count": 0,
                                     "detail": "a\nb"})")
                .find("detail:"),
            std::string::npos);
  EXPECT_NE(ErrorOf<PhaseReport>(R"({"phase": "inspection", "index": 0, "count": 0, "detail": ")" +
                                 std::string(300, 'x') + R"("})")
                .find("detail:"),
            std::string::npos);
  EXPECT_EQ(ErrorOf<PhaseReport>(R"({"phase": 3, "index": 0, "count": 0, "detail": ""})"),
            "phase: expected a string, got an integer");
}

// An exit batch: 1..kMaxExits exits, each checked as a single report was, refusals naming the
// entry; no attempt twice; its answer round-trips.
TEST(ProtocolTest, ExitBatchesAreBoundedAndNameTheBadExit) {
  const std::string other(64, 'b');
  auto exit = [](const std::string& job, int attempt, const std::string& outcome) {
    return Json{{"job", job}, {"attempt", attempt}, {"outcome", outcome}};
  };
  Json batch = {{"exits", {exit(kJob, 1, "succeeded"), exit(other, 2, "failed")}}};
  batch["exits"][1]["exit_status"] = 79;
  Expected<ExitBatch> decoded = Decode<ExitBatch>(batch.dump());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ASSERT_EQ(decoded->exits.size(), 2u);
  EXPECT_EQ(decoded->exits[1], (ExitEntry{other, 2, ExitOutcome::kFailed, 79}));
  EXPECT_FALSE(decoded->exits[0].exit_status);
  EXPECT_EQ(Dump(decoded->ToJson()), Dump(batch));

  EXPECT_EQ(ErrorOf<ExitBatch>(R"({"exits": []})"),
            "exits: is empty; send at least one exit");
  EXPECT_EQ(ErrorOf<ExitBatch>(R"({})"), "exits: is missing");
  EXPECT_EQ(ErrorOf<ExitBatch>(R"({"exits": {}})"), "exits: expected an array, got an object");
  Json bad = {{"exits", {exit(kJob, 1, "succeeded"), exit("zz", 1, "succeeded")}}};
  EXPECT_EQ(ErrorOf<ExitBatch>(bad.dump()).rfind("exits[1].job: ", 0), 0u);
  bad = {{"exits", {exit(kJob, 0, "succeeded")}}};
  EXPECT_EQ(ErrorOf<ExitBatch>(bad.dump()).rfind("exits[0].attempt: ", 0), 0u);
  bad = {{"exits", {exit(kJob, 1, "succeeded"), exit(other, 1, "exploded")}}};
  EXPECT_EQ(ErrorOf<ExitBatch>(bad.dump()).rfind("exits[1].outcome: unknown exit outcome", 0), 0u);
  bad = {{"exits", {exit(kJob, 1, "failed")}}};
  bad["exits"][0]["exit_status"] = 1024;
  EXPECT_EQ(ErrorOf<ExitBatch>(bad.dump()).rfind("exits[0].exit_status: ", 0), 0u);
  bad = {{"exits", {exit(kJob, 1, "failed")}}};
  bad["exits"][0]["agent"] = "host-a";  // the host is in the route, not in the exit
  EXPECT_NE(ErrorOf<ExitBatch>(bad.dump()).find("agent"), std::string::npos);
  bad = {{"exits", {exit(kJob, 1, "failed"), exit(other, 1, "failed"), exit(kJob, 1, "killed")}}};
  EXPECT_EQ(ErrorOf<ExitBatch>(bad.dump()),
            "exits[2]: attempt 1 of job " + kJob + " is listed twice");
  // The same job's two attempts may both wait for delivery.
  EXPECT_TRUE(Decode<ExitBatch>(Json{{"exits", {exit(kJob, 1, "killed"), exit(kJob, 2, "failed")}}}
                                    .dump())
                  .ok());

  Json full = {{"exits", Json::array()}};
  for (size_t i = 0; i < kMaxExits; ++i) {
    full["exits"].push_back(exit(kJob, static_cast<int>(i) + 1, "succeeded"));
  }
  EXPECT_TRUE(Decode<ExitBatch>(full.dump()).ok());
  full["exits"].push_back(exit(kJob, static_cast<int>(kMaxExits) + 1, "succeeded"));
  EXPECT_EQ(ErrorOf<ExitBatch>(full.dump()),
            "exits: holds 4097 items; at most 4096 are accepted in one message");

  ExitBatchReply reply{{{kJob, 1, ExitResult::kRecorded, ""},
                        {other, 2, ExitResult::kEnded, "attempt 2 of job b has already ended"}}};
  Expected<ExitBatchReply> back = Decode<ExitBatchReply>(Dump(reply.ToJson()));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(Dump(back->ToJson()), Dump(reply.ToJson()));
  EXPECT_EQ(ErrorOf<ExitBatchReply>(
                R"({"results": [{"job": ")" + kJob + R"(", "attempt": 1, "result": "maybe"}]})")
                .rfind("results[0].result: unknown exit result", 0),
            0u);
}

TEST(ProtocolTest, ViewsRoundTrip) {
  JobSummary job;
  job.id = kJob;
  job.model = "ViT-B/16";
  job.state = JobState::kRunning;
  job.progress = 0.5;
  job.phase = PhaseReport{JobPhase::kFineTune, 3, 4, "cifar10 lr=0.01"};
  JobDetail detail;
  detail.summary = job;
  detail.config = {{"model", "ViT-B/16"}};
  detail.attempts.push_back({1, "h1", "h1:1", "t", std::nullopt, std::nullopt, std::nullopt, 400});
  detail.results.push_back({Evaluation::kFewShot, "digits", 5, 0, "accuracy", 0.8});
  detail.ledger.device_seconds["cpu"] = 4;
  Expected<JobDetail> back = Decode<JobDetail>(Dump(detail.ToJson()));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->summary.state, JobState::kRunning);
  ASSERT_TRUE(back->summary.phase.has_value());
  EXPECT_EQ(back->summary.phase->ToString(), "fine-tune 3/4 (cifar10 lr=0.01)");
  // A job without a phase says null, which reads back as none.
  job.phase.reset();
  Expected<JobSummary> plain = Decode<JobSummary>(Dump(job.ToJson()));
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_FALSE(plain->phase.has_value());
  EXPECT_EQ(back->attempts[0].resumed_from_step, 400);
  EXPECT_EQ(back->results[0].shots, 5);
  EXPECT_EQ(back->ledger.device_seconds.at("cpu"), 4);
}

TEST(ProtocolTest, WholeNumbersFromText) {
  EXPECT_EQ(*ParseWholeNumber("42", "n", 0, 100), 42);
  EXPECT_EQ(*ParseWholeNumber("-3", "n", -5, 5), -3);
  for (const char* bad : {"", "+1", " 1", "1 ", "0x1", "1e3", "99999999999999999999", "--1", "-"}) {
    EXPECT_FALSE(ParseWholeNumber(bad, "n", -100, 100).ok()) << bad;
  }
  EXPECT_FALSE(ParseWholeNumber("9223372036854775808", "n", 0,
                                std::numeric_limits<int64_t>::max())
                   .ok());
}

}  // namespace
}  // namespace vitscale::protocol
