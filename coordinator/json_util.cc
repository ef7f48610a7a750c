#include "coordinator/json_util.h"

#include <chrono>
#include <cmath>
#include <ctime>

#include <fmt/format.h>

namespace vitscale::coordinator {

double WallNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string IsoTime(double unix_seconds) {
  std::time_t whole = static_cast<std::time_t>(std::floor(unix_seconds));
  int millis = static_cast<int>((unix_seconds - static_cast<double>(whole)) * 1000.0);
  std::tm utc{};
  gmtime_r(&whole, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  return fmt::format("{}.{:03d}Z", text, millis);
}

Expected<nlohmann::json> ParseJsonObject(const std::string& body) {
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(body);
  } catch (const nlohmann::json::parse_error& e) {
    return InvalidArgument(fmt::format("malformed JSON at byte {}: {}", e.byte, e.what()));
  }
  if (!value.is_object()) return InvalidArgument("the body must be a JSON object");
  return value;
}

namespace {

Expected<const nlohmann::json*> Field(const nlohmann::json& object, const std::string& name) {
  auto it = object.find(name);
  if (it == object.end()) return InvalidArgument("field '" + name + "' is missing");
  return &*it;
}

}  // namespace

Expected<std::string> StringField(const nlohmann::json& object, const std::string& name) {
  ASSIGN_OR_RETURN(const nlohmann::json* value, Field(object, name));
  if (!value->is_string()) return InvalidArgument("field '" + name + "' must be a string");
  return value->get<std::string>();
}

Expected<int64_t> IntField(const nlohmann::json& object, const std::string& name) {
  ASSIGN_OR_RETURN(const nlohmann::json* value, Field(object, name));
  if (!value->is_number_integer()) return InvalidArgument("field '" + name + "' must be an integer");
  return value->get<int64_t>();
}

Expected<double> NumberField(const nlohmann::json& object, const std::string& name) {
  ASSIGN_OR_RETURN(const nlohmann::json* value, Field(object, name));
  if (!value->is_number()) return InvalidArgument("field '" + name + "' must be a number");
  double number = value->get<double>();
  if (!std::isfinite(number)) return InvalidArgument("field '" + name + "' must be finite");
  return number;
}

Expected<nlohmann::json> ArrayField(const nlohmann::json& object, const std::string& name) {
  ASSIGN_OR_RETURN(const nlohmann::json* value, Field(object, name));
  if (!value->is_array()) return InvalidArgument("field '" + name + "' must be an array");
  return *value;
}

Expected<std::optional<int64_t>> OptionalIntField(const nlohmann::json& object,
                                                  const std::string& name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return std::optional<int64_t>();
  if (!it->is_number_integer()) return InvalidArgument("field '" + name + "' must be an integer");
  return std::optional<int64_t>(it->get<int64_t>());
}

}  // namespace vitscale::coordinator
