// Decoding and encoding JSON at a process boundary, strictly and without exceptions.
//
// Every message type in protocol/ has `static Expected<T> FromJson(const Json&, path)` built on
// ObjectReader, and `Json ToJson() const`. A decoder checks that required fields are present,
// types before use, integers against their range before narrowing, strings for valid UTF-8,
// control characters, length and (for names, hosts, ids and paths) their documented pattern.
// The one error it gives is kInvalidArgument naming the field's path and the problem:
// "points[3].value: expected a number, got a string" (the coordinator answers it with a 400).
//
// Unknown fields (docs/api.md, "Messages"): a message sent TO the coordinator (a request body)
// refuses them, naming the field and the nearest known one, so a typo never goes unnoticed; a
// message sent BY the coordinator (a reply read by the agent, the CLI or the trainer) ignores
// them, so a newer coordinator may add fields without breaking older clients.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace vitscale::protocol {

using Json = nlohmann::json;

// Deeper nesting is refused before the text is parsed; no message needs more than a few levels
// (a job spec inside a launch inside a poll reply is the deepest, about 6).
inline constexpr int kMaxJsonDepth = 32;

// kInvalidArgument "PATH: PROBLEM" ("the body: PROBLEM" for the root).
Status FieldError(const std::string& path, const std::string& problem);

// Parses JSON text whose nesting is at most kMaxJsonDepth; the error says where it breaks.
Expected<Json> ParseJson(std::string_view text);
// Parses a whole message: JSON text holding an object, then T::FromJson.
template <typename T>
Expected<T> Decode(std::string_view text) {
  ASSIGN_OR_RETURN(Json value, ParseJson(text));
  return T::FromJson(value, "");
}

// Serialises compactly. Never throws: a string that is not UTF-8 (only a bug could put one into
// a value) is written with U+FFFD in place of its bad bytes.
std::string Dump(const Json& value);

// What a string field may hold. Every kind is valid UTF-8 without control characters.
enum class TextKind {
  kText,          // free text on one line
  kDocument,      // free text over lines: tabs, newlines and carriage returns allowed
  kName,          // [A-Za-z0-9][A-Za-z0-9._-]*: sweep names (one URL path segment)
  kLabel,         // [A-Za-z0-9][A-Za-z0-9._/=@+:-]*: metric, dataset and result names
  kHostName,      // RFC 1123: labels of letters, digits and inner '-', joined by '.'
  kHex64,         // 64 lower-case hex digits: job ids and SHA-256 digests
  kAbsolutePath,  // begins with '/', no empty, '.' or '..' segment
  kToken,         // a credential: [A-Za-z0-9._~-]
};
struct TextRule {
  TextKind kind = TextKind::kText;
  size_t max_bytes = 1024;
};
inline constexpr TextRule kNameRule{TextKind::kName, 128};
inline constexpr TextRule kLabelRule{TextKind::kLabel, 256};
inline constexpr TextRule kHostRule{TextKind::kHostName, 253};
inline constexpr TextRule kJobIdRule{TextKind::kHex64, 64};
inline constexpr TextRule kSha256Rule{TextKind::kHex64, 64};
inline constexpr TextRule kPathRule{TextKind::kAbsolutePath, 4096};
inline constexpr TextRule kTokenRule{TextKind::kToken, 256};

// Checks `value` against `rule`; the error names `path` and says what is allowed.
Status CheckText(const std::string& path, std::string_view value, TextRule rule);

enum class UnknownFields { kRefuse, kIgnore };

template <typename T>
using DecodeFn = Expected<T> (*)(const Json&, const std::string& path);

// Reads the fields of one JSON object. Each call reads one field into `*out`; the first problem
// is kept and later calls do nothing. Finish() returns it, or, with UnknownFields::kRefuse, the
// first field no call asked for.
class ObjectReader {
 public:
  // `value` must outlive the reader; `path` says where it sits ("" for the root, "points[3]").
  ObjectReader(const Json& value, std::string path, UnknownFields unknown);

  void Text(const char* key, std::string* out, TextRule rule = {});
  void OptionalText(const char* key, std::optional<std::string>* out, TextRule rule = {});
  // Whole numbers within [low, high] (a 1.5, or a 2^64, is refused rather than narrowed).
  void Int(const char* key, int64_t* out, int64_t low, int64_t high);
  void Int(const char* key, int* out, int low, int high);
  void OptionalInt(const char* key, std::optional<int64_t>* out, int64_t low, int64_t high);
  void OptionalInt(const char* key, std::optional<int>* out, int low, int high);
  // Finite numbers within [low, high].
  void Number(const char* key, double* out, double low, double high);
  void OptionalNumber(const char* key, std::optional<double>* out, double low, double high);
  // An absent optional flag keeps `*out`.
  void Bool(const char* key, bool* out, bool required = true);
  // A spelling of an enumeration, read with its Parse function.
  template <typename E>
  void Enum(const char* key, E* out, Expected<E> (*parse)(std::string_view)) {
    std::string name;
    Text(key, &name, TextRule{TextKind::kText, 64});
    if (!status_.ok()) return;
    Expected<E> value = parse(name);
    if (!value.ok()) return Fail(key, value.status().message());
    *out = *value;
  }
  // An array of at most `max_items` strings, each checked against `rule`.
  void TextList(const char* key, std::vector<std::string>* out, size_t max_items, TextRule rule,
                bool required = true);
  // An array of at most `max_items` whole numbers, each within [low, high].
  void IntList(const char* key, std::vector<int>* out, size_t max_items, int low, int high,
               bool required = true);
  // A JSON object kept as it is (a job config or a spec the coordinator passes through).
  void RawObject(const char* key, Json* out, bool required = true);
  // A nested message.
  template <typename T>
  void Message(const char* key, T* out, DecodeFn<T> decode) {
    if (const Json* v = Take(key, true)) Keep(decode(*v, Join(key)), out);
  }
  template <typename T>
  void OptionalMessage(const char* key, std::optional<T>* out, DecodeFn<T> decode) {
    const Json* v = Take(key, false);
    if (v == nullptr || v->is_null()) return;
    T value;
    Keep(decode(*v, Join(key)), &value);
    if (status_.ok()) *out = std::move(value);
  }
  // An array of at most `max_items` messages; an absent optional list stays empty.
  template <typename T>
  void List(const char* key, std::vector<T>* out, size_t max_items, DecodeFn<T> decode,
            bool required = true) {
    const Json* v = Take(key, required);
    if (v == nullptr) return;
    if (!v->is_array()) return Fail(key, "expected an array, got " + TypeName(*v));
    if (v->size() > max_items) {
      return Fail(key, "holds " + std::to_string(v->size()) + " items; at most " +
                           std::to_string(max_items) + " are accepted in one message");
    }
    out->clear();
    out->reserve(v->size());
    const std::string prefix = Join(key) + "[";
    for (size_t i = 0; i < v->size() && status_.ok(); ++i) {
      T item;
      Keep(decode((*v)[i], prefix + std::to_string(i) + "]"), &item);
      if (status_.ok()) out->push_back(std::move(item));
    }
  }

  bool ok() const { return status_.ok(); }
  Status Finish();

  // "path.key" for messages about a field of this object.
  std::string Join(const std::string& key) const;
  static std::string TypeName(const Json& value);  // "a string", "an integer", ...

 private:
  // The field, or nullptr when absent (an error if `required`). Remembers `key` as known.
  const Json* Take(const char* key, bool required);
  void Fail(const std::string& key, const std::string& problem);
  template <typename T>
  void Keep(Expected<T> value, T* out) {
    if (!status_.ok()) return;
    if (!value.ok()) {
      status_ = value.status();
      return;
    }
    *out = std::move(value).value();
  }

  const Json& value_;
  std::string path_;
  UnknownFields unknown_;
  std::vector<std::string> known_;
  Status status_;
};

// Reads a whole number out of a query parameter or path segment (no sign for `low` >= 0, no
// leading '+', no spaces), within [low, high]; the error names `what`.
Expected<int64_t> ParseWholeNumber(std::string_view text, const std::string& what, int64_t low,
                                   int64_t high);

}  // namespace vitscale::protocol
