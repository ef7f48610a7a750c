// Small helpers shared by the coordinator's handlers: wall-clock stamps in ISO 8601 and reading
// typed fields out of request bodies with errors that name the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace vitscale::coordinator {

double WallNow();                       // seconds since the Unix epoch
std::string IsoTime(double unix_seconds);  // "2026-11-27T13:00:00.123Z"

// Parses a request body as a JSON object; the error says where the syntax breaks.
Expected<nlohmann::json> ParseJsonObject(const std::string& body);

// Typed field access: kInvalidArgument "field 'x' must be an integer" or "field 'x' is missing".
Expected<std::string> StringField(const nlohmann::json& object, const std::string& name);
Expected<int64_t> IntField(const nlohmann::json& object, const std::string& name);
Expected<double> NumberField(const nlohmann::json& object, const std::string& name);
Expected<nlohmann::json> ArrayField(const nlohmann::json& object, const std::string& name);
// Absent or null → nullopt; present with the wrong type → error.
Expected<std::optional<int64_t>> OptionalIntField(const nlohmann::json& object,
                                                  const std::string& name);

}  // namespace vitscale::coordinator
