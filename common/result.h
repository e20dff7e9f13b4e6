#pragma once
// The one error model of modbox: the agent writes it, the CLI decodes it back.

#include <expected>
#include <string>
#include <utility>
#include <vector>

namespace modbox {

/// What went wrong, in the terms a caller can act on; each kind maps to one HTTP status.
enum class ErrorKind {
  bad_request,   // 400: the request is malformed in a way that is not a field error
  unauthorized,  // 401
  forbidden,     // 403
  not_found,     // 404
  conflict,      // 409: the request contradicts the current state
  timeout,       // 408: waited the requested time without reaching the state
  too_large,     // 413
  validation,    // 422: the body or query failed validation; `fields` says where
  bad_gateway,   // 502: a server in the sandbox could not be reached (nothing listens on its port)
  unavailable,   // 503: a dependency (Podman) is down or restarting
  insufficient_storage,  // 507: a disk (the sandbox's, or the agent's state directory) is full
  internal,      // 500: a bug or an unexpected failure of the host
};

/// One entry of a FastAPI-shaped validation error: {"loc": [...], "msg": ..., "type": ...}.
struct FieldError {
  std::vector<std::string> loc;
  std::string msg;
  std::string type;
};

struct Error {
  ErrorKind kind = ErrorKind::internal;
  std::string message;
  std::vector<FieldError> fields;  // only for ErrorKind::validation
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(ErrorKind kind, std::string message) {
  return std::unexpected(Error{kind, std::move(message), {}});
}

inline std::unexpected<Error> fail_validation(std::vector<FieldError> fields) {
  std::string message = fields.empty() ? "invalid request" : fields.front().msg;
  return std::unexpected(Error{ErrorKind::validation, std::move(message), std::move(fields)});
}

/// Prefixes the error's message with context ("starting container: ...").
inline Error with_context(Error error, const std::string& context) {
  error.message = context + ": " + error.message;
  return error;
}

int http_status(ErrorKind kind);
ErrorKind error_kind_for_status(int status);

}  // namespace modbox
