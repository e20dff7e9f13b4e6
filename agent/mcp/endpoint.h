#pragma once
// The MCP server's HTTP transports on a sandbox URL, and their sessions (agent/mcp/server.h speaks
// the protocol):
//
//   POST   /mcp/terminal/   Streamable HTTP: one JSON-RPC message (or a batch, up to 2025-03-26).
//                           initialize opens a session, answered in Mcp-Session-Id, which every later
//                           request carries (missing: 400, unknown or ended: 404). Requests are
//                           answered with application/json, notifications and responses with 202.
//   GET    /mcp/terminal/   the session's stream (text/event-stream): the server sends no requests of
//                           its own, so it carries keep-alive comments only; one per session (409).
//   DELETE /mcp/terminal/   ends the session.
//   GET    /mcp/terminal/sse                 the legacy HTTP+SSE transport (2024-11-05): a session per
//                                            stream, whose first event names its messages URL
//   POST   /mcp/terminal/messages?sessionId= a message of that session: 202, its response goes out on the stream
//
// `/mcp/terminal` without the slash is the same endpoint. Headers are checked as the spec says: an
// Origin that is not the sandbox URL's is 403, an unsupported MCP-Protocol-Version 400, an Accept
// that excludes what is answered 406, a Content-Type other than JSON 415. Refusals carry a JSON-RPC
// error without id.
//
// Sessions live in memory, per sandbox (at most 32: a new one replaces the one idle longest without
// an open stream; when all have one, 503), end after 30 minutes without a request unless a stream is
// open, and end with their sandbox (close_sandbox). Streams hold a worker thread while open (at most
// 256 in the agent, 503 beyond), ask every second whether their client is still there, and send a
// keep-alive comment every 15 s. A session's requests and open streams are its sandbox's activity
// (its idle timeout); a session nobody uses keeps nothing alive.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "agent/http.h"
#include "agent/mcp/server.h"
#include "agent/sandbox_activity.h"
#include "common/models.h"
#include "common/result.h"

namespace modbox::mcp {

struct EndpointOptions {
  std::size_t sessions_per_sandbox = 32;
  /// Open streams in the whole agent (each holds a worker thread, of the front's 448 long calls).
  std::size_t streams_max = 256;
  /// Messages a legacy session's stream may have waiting for its client (503 beyond).
  std::size_t stream_backlog_max = 64;
  std::chrono::milliseconds session_idle{30 * 60 * 1000};
  std::chrono::milliseconds keep_alive{15'000};
  /// How often a quiet stream asks whether its client is still there (empty writes).
  std::chrono::milliseconds presence_check{1'000};
  std::function<std::chrono::steady_clock::time_point()> now = [] { return std::chrono::steady_clock::now(); };
};

class Endpoint {
 public:
  /// Runs a command in a sandbox (SandboxService::run_exec).
  using Exec = std::function<Result<ExecResult>(const Sandbox& sandbox, const ExecRequest& request)>;
  /// Counts as the sandbox's activity while held (SandboxService::hold_activity).
  using HoldActivity = std::function<SandboxActivity::Hold(const std::string& sandbox_id)>;

  Endpoint(Exec exec, HoldActivity hold_activity, EndpointOptions options = {});
  /// Ends every session, and so every stream.
  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  /// Whether a path of the sandbox URL is this server's: /mcp/terminal and everything under it.
  static bool serves(std::string_view path);
  /// A request for one of the paths above, already let in with the sandbox's key (on a worker thread).
  HttpResponse serve(const Sandbox& sandbox, HttpRequest& request);
  /// Ends the sandbox's sessions: their streams end, their ids answer 404.
  void close_sandbox(const std::string& sandbox_id);
  /// The sandbox's live sessions.
  std::size_t session_count(const std::string& sandbox_id) const;

  struct State;

 private:
  /// The protocol, with the sandbox's exec.
  Server server_for(const Sandbox& sandbox) const;
  // The routes (above).
  HttpResponse post(const Sandbox& sandbox, const HttpRequest& request);
  HttpResponse open_stream(const Sandbox& sandbox, const HttpRequest& request);
  HttpResponse end_session(const Sandbox& sandbox, const HttpRequest& request);
  HttpResponse open_legacy_stream(const Sandbox& sandbox, const HttpRequest& request);
  HttpResponse post_legacy(const Sandbox& sandbox, const HttpRequest& request);

  Exec exec_;
  HoldActivity hold_activity_;
  std::shared_ptr<State> state_;
};

}  // namespace modbox::mcp
