// libFuzzer harness: the coordinator's whole request path on arbitrary bytes — the HTTP
// parser (Boost.Beast), the gate (target decoding, routing, credentials, body limits) and every
// handler with its decoder — against the real coordinator over a store in a temp file.
//
// The input is one raw HTTP request. So that the fuzzer can get past the credentials, these
// placeholders in it are replaced before parsing: @ADMIN@ (the admin token), @AGENT@ (agent
// host-a's credential), @REPORT@ (the report token of a running attempt), @JOB@ (that attempt's
// job id). No input may crash the process, make a handler throw (a 500), or leave an error body
// that is not JSON with an "error".
//
// Built by fuzz/CMakeLists.txt (vitscale_fuzzer); seed corpus in fuzz/corpus/http/.
#include <stdlib.h>

#include <boost/asio/io_context.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "coordinator/coordinator.h"
#include "protocol/agent.h"

namespace {

using namespace vitscale;
namespace http = boost::beast::http;

constexpr char kSweep[] =
    "name: fuzz\nrecipe: small-images\npretrain:\n  dataset: fashion-mnist/0-4\n  epochs: 1\n"
    "  batch_size: 32\n  subset_seed: 0\ngrid:\n  model: [ViT-Mu/7]\n  subset: [256, 512]\n"
    "resources:\n  ranks: 1\n  gpus_per_rank: 0\n";

class World {
 public:
  World() {
    std::string pattern = (std::filesystem::temp_directory_path() / "vitscale-fuzz-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    dir_ = pattern;
    storage::OpenOptions options;
    options.clock = &clock_;
    options.busy_timeout_ms = 100;
    auto store = storage::Store::Open(dir_ + "/vitscale.db", options);
    if (!store.ok()) std::abort();
    store_ = std::move(store).value();
    coordinator::CoordinatorOptions service;
    service.runs_dir = dir_ + "/runs";
    service.public_url = "http://127.0.0.1:1";
    service.admin_token = admin_;
    auto created = coordinator::Coordinator::Create(io_, *store_, clock_, service);
    if (!created.ok()) std::abort();
    coordinator_ = std::move(created).value();
    if (!coordinator_->Restore().ok()) std::abort();
    coordinator_->AddRoutes(router_);
    gate_ = std::make_unique<coordinator::RequestGate>(router_, coordinator::GateOptions{},
                                                        coordinator_->authorizer());
    // A sweep, an agent with a credential, and a running attempt with its report token.
    Send("POST", "/api/v1/sweeps", admin_, kSweep);
    agent_ = protocol::Json::parse(Send("POST", "/api/v1/agents/credentials", admin_,
                                        R"({"host": "host-a"})"))["token"];
    Send("POST", "/api/v1/agents/register", agent_, R"({"host": "host-a", "slots": 1, "gpus": 0})");
    Expected<protocol::PollReply> poll = protocol::Decode<protocol::PollReply>(
        Send("POST", "/api/v1/agents/host-a/poll", agent_, R"({"running": []})"));
    if (!poll.ok() || poll->launch.empty()) std::abort();
    job_ = poll->launch[0].job;
    report_ = poll->launch[0].spec["run"]["report_token"];
  }

  // The request path of one raw request, as a server session runs it.
  void Handle(std::string raw) {
    Substitute(raw, "@ADMIN@", admin_);
    Substitute(raw, "@AGENT@", agent_);
    Substitute(raw, "@REPORT@", report_);
    Substitute(raw, "@JOB@", job_);
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 << 10);
    parser.body_limit(coordinator::kLargeBody);
    parser.eager(true);
    boost::beast::error_code error;
    size_t offset = 0;
    while (offset < raw.size() && !parser.is_done()) {
      size_t used = parser.put(boost::asio::buffer(raw.data() + offset, raw.size() - offset), error);
      offset += used;
      if (error == http::error::need_more) error = {};
      if (error || used == 0) break;
    }
    if (!error && parser.got_some() && !parser.is_done()) parser.put_eof(error);
    if (!parser.is_header_done()) return;
    const auto& header = parser.get();
    std::string_view authorization;
    if (auto it = header.find(http::field::authorization); it != header.end()) {
      authorization = std::string_view(it->value().data(), it->value().size());
    }
    auto admitted = gate_->Admit(
        std::string_view(header.method_string().data(), header.method_string().size()),
        std::string_view(header.target().data(), header.target().size()), authorization, "");
    if (auto* refusal = std::get_if<coordinator::HttpResponse>(&admitted)) return Check(*refusal);
    if (!parser.is_done()) return;  // an incomplete body: the server would wait, then time out
    auto& ok = std::get<coordinator::RequestGate::Admitted>(admitted);
    if (header.body().size() > ok.body_limit) return;
    coordinator::RequestGate::Dispatch(std::move(ok), header.body(),
                                       [](coordinator::HttpResponse r) { Check(r); });
    io_.poll();
  }

 private:
  static void Substitute(std::string& text, const std::string& from, const std::string& to) {
    for (size_t at = 0; (at = text.find(from, at)) != std::string::npos; at += to.size()) {
      text.replace(at, from.size(), to);
    }
  }

  // No handler may throw, and every error says what is wrong, as JSON.
  static void Check(const coordinator::HttpResponse& response) {
    if (response.status == 500) std::abort();
    if (response.status < 200 || response.status > 599) std::abort();
    if (response.status >= 400) {
      protocol::Json body = protocol::Json::parse(response.body, nullptr, false);
      if (!body.is_object() || !body.contains("error") || !body["error"].is_string()) std::abort();
    }
  }

  std::string Send(const std::string& method, const std::string& target, const std::string& token,
                   const std::string& body) {
    std::string answer;
    gate_->Handle(method, target, "Bearer " + token, body,
                  [&answer](coordinator::HttpResponse r) { answer = std::move(r.body); });
    io_.poll();
    return answer;
  }

  boost::asio::io_context io_;
  FakeClock clock_;
  std::string dir_;
  std::string admin_ = "fuzz-admin-token-0123456789";
  std::string agent_, report_, job_;
  std::unique_ptr<storage::Store> store_;
  coordinator::Router router_;
  std::unique_ptr<coordinator::Coordinator> coordinator_;
  std::unique_ptr<coordinator::RequestGate> gate_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();  // one coordinator for the whole run; its state grows
  world->Handle(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
