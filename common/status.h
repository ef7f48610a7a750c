// Status and Expected<T>: the result types at every I/O edge (files, SQLite, HTTP, processes).
// Fallible functions return one of these instead of throwing; exceptions from third-party
// libraries are caught at the edge and converted here, with a message that says what to fix.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace vitscale {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,    // the caller's input is wrong: the message says which field and why
  kNotFound,           // a named thing (file, job, model) does not exist
  kAlreadyExists,      // a create that must not overwrite
  kFailedPrecondition, // the system is in a state that refuses the call (e.g. newer schema)
  kCorruption,         // stored data fails its checks (checksum, truncated file)
  kIOError,            // the OS or a library refused an operation
  kUnavailable,        // a peer is away; the call may succeed later
  kUnauthenticated,    // no credential, or one that is not valid (HTTP 401)
  kPermissionDenied,   // a valid credential that may not do this (HTTP 403)
  kInternal,           // a broken invariant: a bug in vitscale
  kResourceExhausted,  // memory (or another resource) ran out: a smaller request may fit
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid argument: <message>", or "ok".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
inline Status IOError(std::string m) { return {StatusCode::kIOError, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status Unauthenticated(std::string m) {
  return {StatusCode::kUnauthenticated, std::move(m)};
}
inline Status PermissionDenied(std::string m) {
  return {StatusCode::kPermissionDenied, std::move(m)};
}
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status ResourceExhausted(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}

// Either a T or a non-ok Status.
template <typename T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Expected(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    assert(!status_.ok() && "Expected<T> built from an ok Status carries no value");
    if (status_.ok()) status_ = Internal("Expected built from an ok Status");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T&& operator*() && { return std::move(*value_); }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace vitscale

#define VITSCALE_CONCAT_INNER(a, b) a##b
#define VITSCALE_CONCAT(a, b) VITSCALE_CONCAT_INNER(a, b)

// Returns the Status of `expr` from the enclosing function when it is not ok.
#define RETURN_IF_ERROR(expr)                         \
  do {                                                \
    ::vitscale::Status _vitscale_status = (expr);     \
    if (!_vitscale_status.ok()) return _vitscale_status; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, Fallible());` binds the value or returns the error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(VITSCALE_CONCAT(_vitscale_expected_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()
