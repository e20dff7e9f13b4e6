#pragma once
// The front: one event loop serving every HTTP port of the agent — the control API (unix socket and
// loopback TCP), each sandbox URL and each per-port URL (DESIGN.md "Sandbox URL and front").
//
// Threads: one loop thread does all socket I/O (heads, bodies, proxying, WebSocket relays), so a
// sandbox costs a listening socket and its connections, never a thread. Handlers run on a WorkPool
// (agent/front/work_pool.h): threads that follow the work in flight, with long calls (wait, exec,
// transfers, opening a relay) capped below the limit so that short calls always find one.
//
// A sandbox URL serves /modbox/api/* through SandboxSite::serve_api, the agent's own web routes
// (/terminal/, /mcp/terminal/) through SandboxSite::serve_web but for the terminal's WebSocket,
// /terminal/ws, which the loop bridges to a session of the sandbox's helper itself
// (agent/front/terminal_bridge.h, common/terminal_protocol.h), and relays every other path,
// after checking the sandbox's key (agent/front/proxy_auth.h), to a TCP port inside the sandbox
// through its helper. A per-port URL relays every path to its port.
//
// Limits (FrontOptions): request line 8 KiB (414), head 64 KiB (431), smuggling shapes 400
// (agent/front/head_checks.h); the head must arrive within 10 s, an idle keep-alive connection is
// closed after 60 s; a relayed direction holds at most one 64 KiB piece in flight (a slow reader
// slows its writer); a streamed handler body at most 256 KiB.

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "agent/front/head_checks.h"
#include "agent/http.h"
#include "agent/sandbox_activity.h"
#include "common/helper_protocol.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace modbox {

namespace front {
struct State;  // Boost.Asio and Beast stay in front.cpp and connection.cpp
}

/// Where a sandbox port is relayed, and the key that opens it.
struct ProxyTarget {
  std::filesystem::path helper_socket;
  int port = 8080;                     // the TCP port inside the sandbox
  std::optional<std::string> api_key;  // SANDBOX_API_KEY; none: only the owner token opens it (403)
  /// The sandbox's activity meter (idle timeout): a connection to its URLs holds it from its first
  /// authenticated request (proxied or API) until it closes. Null: not tracked.
  std::shared_ptr<SandboxActivity> activity;
};

/// An interactive session running in a sandbox: its helper connection, positioned after SessionReady
/// (common/helper_protocol.h). Closing the connection kills the session's processes.
struct SessionConnection {
  UniqueFd connection;
  std::uint32_t pid = 0;  // the session's command, in the sandbox
};

/// What the sandboxes' ports serve; the agent's wiring implements it over the lifecycle.
class SandboxSite {
 public:
  virtual ~SandboxSite() = default;
  /// An /modbox/api/* request of the sandbox URL (on a worker thread, as a long call: every one
  /// waits on the sandbox's helper, which code in the sandbox can slow down).
  virtual HttpResponse serve_api(const std::string& sandbox_id, HttpRequest& request) = 0;
  /// The answer to an /modbox/api/* request from its head alone (refused credentials), so that a
  /// client waiting for 100 Continue never sends its body; nullopt lets it go on. On the loop:
  /// must not block.
  virtual std::optional<HttpResponse> precheck_api(const std::string& sandbox_id, const HttpRequest& request) = 0;
  /// A request for one of the agent's own web routes of the sandbox URL (is_agent_web_route: the
  /// terminal, the MCP servers), once the front has let it in as it lets in a proxied request (the
  /// sandbox's key or the owner token, as Bearer, `?token=` or its cookie; `token` is removed from
  /// the query). On a worker thread, as a long call.
  virtual HttpResponse serve_web(const std::string& sandbox_id, HttpRequest& request) = 0;
  /// Where `sandbox_port` of the sandbox is relayed (0: the sandbox URL's own web port). An error
  /// when the sandbox is gone or not running. On the loop: must not block. Asked until it succeeds
  /// once per port: a running sandbox's target stays as it is until its ports close.
  virtual Result<ProxyTarget> proxy_target(const std::string& sandbox_id, int sandbox_port) = 0;
  /// A byte stream to the target port, through the sandbox's helper (on a worker thread; blocks
  /// while the helper connects). ErrorKind::bad_gateway when nothing listens there.
  virtual Result<UniqueFd> open_relay(const ProxyTarget& target) = 0;
  /// Starts an interactive session (a terminal's shell, or a command on pipes) through the target's
  /// helper (on a worker thread; blocks while the helper starts it). The helper's refusal is an
  /// error that says why: `conflict` (no shell in the image, a helper too old), `unavailable`.
  virtual Result<SessionConnection> open_session(const ProxyTarget& target, const helper::SessionOpen& request) = 0;
};

/// Whether a path of the sandbox URL is one the agent serves itself, for every image, instead of
/// relaying it into the sandbox: /terminal and /mcp/terminal, and everything under them.
bool is_agent_web_route(std::string_view path);

struct FrontOptions {
  std::string owner_token;  // the agent's token: accepted on every sandbox port
  std::string sandbox_host = "127.0.0.1";
  std::size_t worker_threads_max = 512;
  std::size_t long_calls_max = 448;
  front::HeadLimits head_limits;
  std::chrono::milliseconds head_timeout{10'000};
  std::chrono::milliseconds idle_timeout{60'000};
  /// How long a streamed body may stall (a handler not taking an upload, a client not reading).
  std::chrono::milliseconds stream_stall_timeout{30'000};
};

class Front {
 public:
  /// Starts the loop thread. `site` serves the sandbox ports (may be null when there are none).
  explicit Front(FrontOptions options = {}, SandboxSite* site = nullptr);
  /// stop().
  ~Front();
  Front(const Front&) = delete;
  Front& operator=(const Front&) = delete;

  /// Serves `handler` on a unix socket (mode 0600) or a TCP address; returns the TCP port (0 for
  /// a unix socket). `is_long` picks the long calls (null: none).
  Result<int> listen(const ListenOptions& options, HttpHandler handler, LongCallPredicate is_long = nullptr);
  /// Serves `sandbox_port` of a sandbox (0: its sandbox URL) on `preferred_port` when it is free
  /// (0: any); returns the port. Opening an open one again answers its port.
  Result<int> open_sandbox_port(const std::string& sandbox_id, int sandbox_port, int preferred_port);
  /// Closes the sandbox's ports and every connection to them (relays included); returns once the
  /// loop has done so.
  void close_sandbox(const std::string& sandbox_id);
  /// Closes every listener and connection, waits for the handlers in flight, ends the loop.
  void stop();

  struct Stats {
    std::size_t connections = 0;
    std::size_t listeners = 0;
    std::size_t worker_threads = 0;
    std::size_t long_calls = 0;
  };
  Stats stats() const;

 private:
  std::shared_ptr<front::State> state_;
};

}  // namespace modbox
