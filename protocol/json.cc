#include "protocol/json.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "common/names.h"
#include "common/text.h"

namespace vitscale::protocol {
namespace {

bool IsAsciiAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// The deepest nesting of arrays and objects in JSON text, counted outside strings; stops
// counting past `limit`.
int NestingDepth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

bool IsHostLabel(std::string_view label) {
  if (label.empty() || label.size() > 63) return false;
  if (label.front() == '-' || label.back() == '-') return false;
  for (char c : label) {
    if (!IsAsciiAlnum(c) && c != '-') return false;
  }
  return true;
}

const char* Describe(TextKind kind) {
  switch (kind) {
    case TextKind::kText:
      return "text";
    case TextKind::kDocument:
      return "text";
    case TextKind::kName:
      return "a name of letters, digits, '.', '_' and '-' that starts with a letter or digit";
    case TextKind::kLabel:
      return "a name of letters, digits and . _ / = @ + : - that starts with a letter or digit";
    case TextKind::kHostName:
      return "a host name (letters, digits and '-', in labels joined by '.'; RFC 1123)";
    case TextKind::kHex64:
      return "64 lower-case hex digits";
    case TextKind::kAbsolutePath:
      return "an absolute path without '.' or '..' segments";
    case TextKind::kToken:
      return "a token of letters, digits and . _ ~ -";
  }
  return "text";
}

bool Matches(std::string_view value, TextKind kind) {
  switch (kind) {
    case TextKind::kText:
    case TextKind::kDocument:
      return true;
    case TextKind::kName:
    case TextKind::kLabel: {
      if (value.empty() || !IsAsciiAlnum(value.front())) return false;
      std::string_view extra = kind == TextKind::kName ? "._-" : "._/=@+:-";
      for (char c : value) {
        if (!IsAsciiAlnum(c) && extra.find(c) == std::string_view::npos) return false;
      }
      return true;
    }
    case TextKind::kHostName: {
      if (value.empty()) return false;
      size_t start = 0;
      while (true) {
        size_t dot = value.find('.', start);
        if (!IsHostLabel(value.substr(start, dot - start))) return false;
        if (dot == std::string_view::npos) return true;
        start = dot + 1;
      }
    }
    case TextKind::kHex64:
      if (value.size() != 64) return false;
      for (char c : value) {
        if (!IsLowerHex(c)) return false;
      }
      return true;
    case TextKind::kAbsolutePath: {
      if (value.empty() || value.front() != '/') return false;
      size_t start = 1;
      while (start <= value.size()) {
        size_t slash = value.find('/', start);
        if (slash == std::string_view::npos) slash = value.size();
        std::string_view segment = value.substr(start, slash - start);
        // A trailing '/' is allowed; an empty segment inside ('//') is not.
        if (segment.empty() && slash != value.size()) return false;
        if (segment == "." || segment == "..") return false;
        start = slash + 1;
      }
      return true;
    }
    case TextKind::kToken:
      if (value.empty()) return false;
      for (char c : value) {
        if (!IsAsciiAlnum(c) && std::string_view("._~-").find(c) == std::string_view::npos) {
          return false;
        }
      }
      return true;
  }
  return false;
}

}  // namespace

Status FieldError(const std::string& path, const std::string& problem) {
  return InvalidArgument((path.empty() ? std::string("the body") : path) + ": " + problem);
}

Expected<Json> ParseJson(std::string_view text) {
  if (NestingDepth(text, kMaxJsonDepth) > kMaxJsonDepth) {
    return InvalidArgument(fmt::format(
        "the body nests arrays and objects deeper than {} levels; no message needs that",
        kMaxJsonDepth));
  }
  try {
    return Json::parse(text);
  } catch (const Json::exception& e) {
    // The library's message may quote the offending bytes: shown only as printable text.
    return InvalidArgument("malformed JSON: " + Printable(e.what(), 300));
  }
}

std::string Dump(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

namespace {

// What is wrong with `value` under `rule`, or "" when nothing is; the caller names the field
// (only then, so that a valid field costs no message).
std::string TextProblem(std::string_view value, TextRule rule) {
  if (!IsValidUtf8(value)) return "is not valid UTF-8";
  bool lines = rule.kind == TextKind::kDocument;
  for (char c : value) {
    unsigned char u = static_cast<unsigned char>(c);
    bool allowed = lines && (c == '\n' || c == '\r' || c == '\t');
    if ((u < 0x20 || u == 0x7F) && !allowed) {
      return "holds a control character ('" + Printable(value, 60) + "')";
    }
  }
  if (value.size() > rule.max_bytes) {
    return fmt::format("is {} bytes long; at most {} are allowed", value.size(), rule.max_bytes);
  }
  if (rule.kind != TextKind::kText && rule.kind != TextKind::kDocument && value.empty()) {
    return std::string("is empty; expected ") + Describe(rule.kind);
  }
  if (!Matches(value, rule.kind)) {
    return "'" + Printable(value, 60) + "' is not " + Describe(rule.kind);
  }
  return "";
}

}  // namespace

Status CheckText(const std::string& path, std::string_view value, TextRule rule) {
  std::string problem = TextProblem(value, rule);
  return problem.empty() ? Status::Ok() : FieldError(path, problem);
}

ObjectReader::ObjectReader(const Json& value, std::string path, UnknownFields unknown)
    : value_(value), path_(std::move(path)), unknown_(unknown) {
  known_.reserve(8);  // most messages have a few fields: one allocation, not one per growth
  if (!value_.is_object()) {
    status_ = FieldError(path_, "expected a JSON object, got " + TypeName(value_));
  }
}

std::string ObjectReader::Join(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

std::string ObjectReader::TypeName(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "true or false";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a number with a fraction";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "an array";
    default:
      return "something else";
  }
}

const Json* ObjectReader::Take(const char* key, bool required) {
  known_.push_back(key);
  if (!status_.ok()) return nullptr;
  auto it = value_.find(key);
  if (it == value_.end()) {
    if (required) Fail(key, "is missing");
    return nullptr;
  }
  return &*it;
}

void ObjectReader::Fail(const std::string& key, const std::string& problem) {
  if (status_.ok()) status_ = FieldError(Join(key), problem);
}

void ObjectReader::Text(const char* key, std::string* out, TextRule rule) {
  const Json* v = Take(key, true);
  if (v == nullptr) return;
  if (!v->is_string()) return Fail(key, "expected a string, got " + TypeName(*v));
  const std::string& text = v->get_ref<const std::string&>();
  std::string problem = TextProblem(text, rule);
  if (!problem.empty()) return Fail(key, problem);
  *out = text;
}

void ObjectReader::OptionalText(const char* key, std::optional<std::string>* out, TextRule rule) {
  const Json* v = Take(key, false);
  if (v == nullptr || v->is_null()) return;
  if (!v->is_string()) return Fail(key, "expected a string or null, got " + TypeName(*v));
  const std::string& text = v->get_ref<const std::string&>();
  std::string problem = TextProblem(text, rule);
  if (!problem.empty()) return Fail(key, problem);
  *out = text;
}

namespace {

// The integer in `v` if it is one within [low, high]; the problem otherwise.
Expected<int64_t> WholeNumber(const Json& v, int64_t low, int64_t high) {
  // The message is made only for a value that is refused.
  auto range = [&] { return fmt::format("expected an integer within {}..{}", low, high); };
  if (v.is_number_unsigned()) {  // how the parser keeps every integer >= 0
    uint64_t value = v.get<uint64_t>();
    if (high < 0 || value > static_cast<uint64_t>(high) || static_cast<int64_t>(value) < low) {
      return InvalidArgument(fmt::format("{}, got {}", range(), value));
    }
    return static_cast<int64_t>(value);
  }
  if (v.is_number_integer()) {
    int64_t value = v.get<int64_t>();
    if (value < low || value > high) {
      return InvalidArgument(fmt::format("{}, got {}", range(), value));
    }
    return value;
  }
  return InvalidArgument(range() + ", got " + ObjectReader::TypeName(v));
}

}  // namespace

void ObjectReader::Int(const char* key, int64_t* out, int64_t low, int64_t high) {
  const Json* v = Take(key, true);
  if (v == nullptr) return;
  Expected<int64_t> value = WholeNumber(*v, low, high);
  if (!value.ok()) return Fail(key, value.status().message());
  *out = *value;
}

void ObjectReader::Int(const char* key, int* out, int low, int high) {
  int64_t wide = 0;
  Int(key, &wide, low, high);
  if (status_.ok()) *out = static_cast<int>(wide);  // within [low, high], so it fits
}

void ObjectReader::OptionalInt(const char* key, std::optional<int64_t>* out, int64_t low,
                               int64_t high) {
  const Json* v = Take(key, false);
  if (v == nullptr || v->is_null()) return;
  Expected<int64_t> value = WholeNumber(*v, low, high);
  if (!value.ok()) return Fail(key, value.status().message());
  *out = *value;
}

void ObjectReader::OptionalInt(const char* key, std::optional<int>* out, int low, int high) {
  std::optional<int64_t> wide;
  OptionalInt(key, &wide, low, high);
  if (status_.ok() && wide) *out = static_cast<int>(*wide);
}

namespace {

Expected<double> FiniteNumber(const Json& v, double low, double high) {
  if (!v.is_number()) {
    return InvalidArgument("expected a number, got " + ObjectReader::TypeName(v));
  }
  double value = v.get<double>();
  if (!std::isfinite(value) || value < low || value > high) {
    return InvalidArgument(fmt::format("expected a number within {}..{}, got {}", low, high, value));
  }
  return value;
}

}  // namespace

void ObjectReader::Number(const char* key, double* out, double low, double high) {
  const Json* v = Take(key, true);
  if (v == nullptr) return;
  Expected<double> value = FiniteNumber(*v, low, high);
  if (!value.ok()) return Fail(key, value.status().message());
  *out = *value;
}

void ObjectReader::OptionalNumber(const char* key, std::optional<double>* out, double low,
                                  double high) {
  const Json* v = Take(key, false);
  if (v == nullptr || v->is_null()) return;
  Expected<double> value = FiniteNumber(*v, low, high);
  if (!value.ok()) return Fail(key, value.status().message());
  *out = *value;
}

void ObjectReader::Bool(const char* key, bool* out, bool required) {
  const Json* v = Take(key, required);
  if (v == nullptr) return;
  if (!v->is_boolean()) return Fail(key, "expected true or false, got " + TypeName(*v));
  *out = v->get<bool>();
}

void ObjectReader::TextList(const char* key, std::vector<std::string>* out, size_t max_items,
                            TextRule rule, bool required) {
  const Json* v = Take(key, required);
  if (v == nullptr) return;
  if (!v->is_array()) return Fail(key, "expected an array of strings, got " + TypeName(*v));
  if (v->size() > max_items) {
    return Fail(key, fmt::format("holds {} items; at most {} are accepted", v->size(), max_items));
  }
  out->clear();
  for (size_t i = 0; i < v->size(); ++i) {
    std::string path = fmt::format("{}[{}]", Join(key), i);
    const Json& item = (*v)[i];
    if (!item.is_string()) {
      status_ = FieldError(path, "expected a string, got " + TypeName(item));
      return;
    }
    Status checked = CheckText(path, item.get_ref<const std::string&>(), rule);
    if (!checked.ok()) {
      status_ = checked;
      return;
    }
    out->push_back(item.get<std::string>());
  }
}

void ObjectReader::IntList(const char* key, std::vector<int>* out, size_t max_items, int low,
                            int high, bool required) {
  const Json* v = Take(key, required);
  if (v == nullptr) return;
  if (!v->is_array()) return Fail(key, "expected an array of whole numbers, got " + TypeName(*v));
  if (v->size() > max_items) {
    return Fail(key, fmt::format("holds {} items; at most {} are accepted", v->size(), max_items));
  }
  out->clear();
  for (size_t i = 0; i < v->size(); ++i) {
    const Json& item = (*v)[i];
    std::optional<int64_t> value;
    if (item.is_number_unsigned()) {
      if (item.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        value = static_cast<int64_t>(item.get<uint64_t>());
      }
    } else if (item.is_number_integer()) {
      value = item.get<int64_t>();
    }
    if (!value || *value < low || *value > high) {
      status_ = FieldError(fmt::format("{}[{}]", Join(key), i),
                           fmt::format("expected a whole number within {}..{}, got {}", low, high,
                                       value ? std::to_string(*value) : item.dump()));
      return;
    }
    out->push_back(static_cast<int>(*value));
  }
}

void ObjectReader::RawObject(const char* key, Json* out, bool required) {
  const Json* v = Take(key, required);
  if (v == nullptr) return;
  if (!v->is_object()) return Fail(key, "expected an object, got " + TypeName(*v));
  *out = *v;
}

Status ObjectReader::Finish() {
  if (!status_.ok() || unknown_ == UnknownFields::kIgnore) return status_;
  for (auto it = value_.begin(); it != value_.end(); ++it) {
    bool known = false;
    for (const std::string& k : known_) known = known || k == it.key();
    if (!known) {
      return FieldError(Join(Printable(it.key(), 60)),
                        "is not a field of this message" + DidYouMean(it.key(), known_));
    }
  }
  return Status::Ok();
}

Expected<int64_t> ParseWholeNumber(std::string_view text, const std::string& what, int64_t low,
                                   int64_t high) {
  auto refused = [&] {  // the message is made only for a refused number
    return InvalidArgument(fmt::format("{} must be a whole number within {}..{}, not '{}'", what,
                                       low, high, Printable(text, 40)));
  };
  bool negative = !text.empty() && text.front() == '-';
  std::string_view digits = negative ? text.substr(1) : text;
  if (digits.empty() || digits.size() > 19) return refused();
  uint64_t magnitude = 0;  // 19 digits stay below 10^19 < 2^64
  for (char c : digits) {
    if (c < '0' || c > '9') return refused();
    magnitude = magnitude * 10 + static_cast<uint64_t>(c - '0');
  }
  if (magnitude > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return refused();
  }
  int64_t value = static_cast<int64_t>(magnitude);
  if (negative) value = -value;
  if (value < low || value > high) return refused();
  return value;
}

}  // namespace vitscale::protocol
