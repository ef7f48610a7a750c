// libFuzzer harness: every protocol decoder (protocol/) on arbitrary bytes.
//
// The first byte picks the message type, the rest is the JSON text. A decoder must never throw
// or crash, whatever the text; what it accepts must encode and decode again to the same text
// (so the coordinator never sends what its own peers would refuse). The text helpers — strict
// numbers, host lists, text rules — get the same bytes.
//
// Built by fuzz/CMakeLists.txt (vitscale_fuzzer); seed corpus in fuzz/corpus/protocol/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocol/agent.h"
#include "protocol/api.h"
#include "protocol/reports.h"

namespace {

using namespace vitscale;
using namespace vitscale::protocol;

// Decodes `text` as T; what decodes must survive a round trip unchanged.
template <typename T>
void RoundTrip(std::string_view text) {
  Expected<T> decoded = Decode<T>(text);
  if (!decoded.ok()) {
    if (decoded.status().code() != StatusCode::kInvalidArgument) std::abort();
    return;
  }
  std::string encoded = Dump(decoded->ToJson());
  Expected<T> again = Decode<T>(encoded);
  if (!again.ok()) std::abort();  // we accepted it, but refuse our own encoding of it
  if (Dump(again->ToJson()) != encoded) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 25) {
    case 0: RoundTrip<RegisterRequest>(text); break;
    case 1: RoundTrip<RegisterReply>(text); break;
    case 2: RoundTrip<PollRequest>(text); break;
    case 3: RoundTrip<PollReply>(text); break;
    case 4: RoundTrip<NotHeldReply>(text); break;
    case 5:  // the exit batch and its answer
      RoundTrip<ExitBatch>(text);
      RoundTrip<ExitBatchReply>(text);
      break;
    case 6: RoundTrip<MetricBatch>(text); break;
    case 7: RoundTrip<ResultsReport>(text); break;
    case 8: RoundTrip<CheckpointReport>(text); break;
    case 9: RoundTrip<StoredReply>(text); break;
    case 10: RoundTrip<ErrorReply>(text); break;
    case 11: RoundTrip<SubmitReply>(text); break;
    case 12: RoundTrip<PriorityRequest>(text); break;
    case 13: RoundTrip<CredentialRequest>(text); break;
    case 14: RoundTrip<CredentialReply>(text); break;
    case 15: RoundTrip<JobSummary>(text); break;
    case 16: RoundTrip<JobPage>(text); break;
    case 17: RoundTrip<JobDetail>(text); break;
    case 18: RoundTrip<SweepView>(text); break;
    case 19: RoundTrip<SweepList>(text); break;
    case 20: RoundTrip<AgentInfo>(text); break;
    case 21: RoundTrip<Event>(text); break;
    case 22: {
      Expected<std::vector<HostRanks>> hosts = ParseHosts(text, "hosts");
      if (hosts.ok() && !ParseHosts(HostsString(*hosts), "hosts").ok()) std::abort();
      Expected<int64_t> number = ParseWholeNumber(text, "n", INT64_MIN + 1, INT64_MAX);
      if (number.ok()) {
        Expected<int64_t> again = ParseWholeNumber(std::to_string(*number), "n", INT64_MIN + 1,
                                                   INT64_MAX);
        if (!again.ok() || *again != *number) std::abort();
      }
      break;
    }
    case 24:
      RoundTrip<PhaseReport>(text);
      break;
    default:  // 23: the text rules
      for (TextRule rule : {TextRule{}, TextRule{TextKind::kDocument, 1 << 20}, kNameRule,
                            kLabelRule, kHostRule, kJobIdRule, kPathRule, kTokenRule}) {
        Status checked = CheckText("f", text, rule);
        (void)checked;
      }
      break;
  }
  return 0;
}
