#pragma once
// The MCP wing: the sandbox URL's /mcp/terminal/ (seed 001 "MCP integration": run shell commands,
// read and write files), served by the agent for every image.
//
//   server.h    JSON-RPC 2.0 and the MCP lifecycle: messages in, responses out, whatever carries them
//   tools.h     the four tools, over the sandbox's exec
//   endpoint.h  the HTTP transports (Streamable HTTP, the legacy HTTP+SSE) and their sessions
//
// This file is the protocol alone. It reaches the sandbox only through the exec function it is
// given, so tests drive it with a fake; it knows nothing of HTTP but the status a reply asks for.

#include <array>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/models.h"
#include "common/result.h"

namespace modbox::mcp {

/// The protocol versions spoken, newest first: those that @modelcontextprotocol/sdk 1.32 lists as
/// supported (its LATEST_PROTOCOL_VERSION first).
inline constexpr std::array<std::string_view, 5> protocol_versions = {"2025-11-25", "2025-06-18", "2025-03-26",
                                                                      "2024-11-05", "2024-10-07"};
inline constexpr std::string_view latest_protocol_version = protocol_versions[0];
/// The version of a legacy HTTP+SSE session that has not been initialized yet.
inline constexpr std::string_view legacy_protocol_version = "2024-11-05";

bool is_supported_version(std::string_view version);
/// The version answered to an initialize asking for `requested`: the same when supported, else the latest.
std::string_view negotiate_version(std::string_view requested);
/// Whether JSON-RPC batches (arrays) may be sent: up to 2025-03-26; 2025-06-18 removed them.
bool allows_batches(std::string_view version);
/// Whether tools have `title` and `outputSchema` and results `structuredContent`: from 2025-06-18.
bool has_structured_content(std::string_view version);
/// Whether tools have `annotations` (hints such as readOnlyHint): from 2025-03-26.
bool has_tool_annotations(std::string_view version);

/// JSON-RPC 2.0 error codes, and the two the MCP SDKs' HTTP transports use for their own refusals.
namespace codes {
inline constexpr int parse_error = -32700;
inline constexpr int invalid_request = -32600;
inline constexpr int method_not_found = -32601;
inline constexpr int invalid_params = -32602;
inline constexpr int internal_error = -32603;
inline constexpr int transport_error = -32000;
inline constexpr int session_not_found = -32001;
}  // namespace codes

/// A JSON-RPC error response without an id: the body of a transport's refusal (a bad header, an
/// unknown session), as the MCP transports allow.
std::string error_body(int code, std::string_view message);

/// Runs a command in the sandbox, as POST /modbox/api/exec does.
using ExecFunction = std::function<Result<ExecResult>(const ExecRequest& request)>;

/// What a session has agreed on so far.
struct SessionState {
  std::optional<std::string> version;  // negotiated by initialize
  bool initialized = false;            // the client sent notifications/initialized
};

/// The answer to one message (or batch) a client sent.
struct Reply {
  enum class Kind {
    responses,      // `body` holds the response to the request, or the array of a batch's: HTTP 200
    accepted,       // notifications and responses only: HTTP 202, no body
    refused,        // no JSON-RPC message (malformed JSON, an invalid request): HTTP 400, `body` the error
    needs_session,  // a valid message other than initialize, and no session: nothing was done
  };
  Kind kind = Kind::accepted;
  std::string body;
  /// Set when it was an initialize that succeeded: the session's version from now on.
  std::optional<std::string> negotiated_version;
  /// It carried notifications/initialized.
  bool initialized_notification = false;
};

/// The deepest nesting of arrays and objects a message may have (deeper: invalid request).
inline constexpr int message_depth_max = 64;

class Server {
 public:
  explicit Server(ExecFunction exec) : exec_(std::move(exec)) {}

  /// Handles the JSON text a client sent, for a session in `state`; with no session yet (nullopt)
  /// only an initialize request is handled, and any other valid message is `needs_session`.
  /// Never throws for any input.
  Reply handle(std::string_view body, const std::optional<SessionState>& state) const;

 private:
  ExecFunction exec_;
};

}  // namespace modbox::mcp
