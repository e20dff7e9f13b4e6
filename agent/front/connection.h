#pragma once
// The front's insides, shared by front.cpp and connection.cpp only (they include Boost): the loop's
// state, its listeners, and one client connection's HTTP exchanges.

// clang-format off
#include <utility>  // before Asio, whose awaitable.hpp uses std::exchange without including it
// clang-format on

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "agent/front/byte_pipe.h"
#include "agent/front/front.h"
#include "agent/front/proxy_auth.h"
#include "agent/front/work_pool.h"

namespace modbox::front {

using Protocol = boost::asio::generic::stream_protocol;
using Socket = Protocol::socket;
using Acceptor = boost::asio::basic_socket_acceptor<Protocol>;
using ErrorCode = boost::system::error_code;
namespace http = boost::beast::http;

/// One listening socket and what it serves: a handler (the control API), or a sandbox's port.
struct Listener {
  HttpHandler handler;
  LongCallPredicate is_long;
  ListenOptions options;
  bool over_tcp = true;
  bool sandbox = false;
  std::string sandbox_id;
  int sandbox_port = 0;  // 0: the sandbox URL
  int host_port = 0;
  /// Where a sandbox port relays, once known (loop only). A running sandbox's target never changes
  /// (its helper socket, port and key), and a sandbox that stops running has its ports closed, so
  /// later requests skip the lifecycle's lock.
  std::optional<ProxyTarget> target;
  std::string unix_path;
  std::unique_ptr<Acceptor> acceptor;
  bool closed = false;
};

class Connection;
class TerminalBridge;

/// Everything the loop owns. Declared so that the io_context is destroyed after the pool (whose
/// tasks post to it) and before the registry (which connections it destroys may still name).
struct State {
  State(FrontOptions options, SandboxSite* site);

  /// Runs `work` on the loop thread and returns when it has run (at once when called on the loop).
  void run_on_loop(const std::function<void()>& work);
  void accept(const std::shared_ptr<Listener>& listener);
  void close_listener(Listener& listener);
  /// A connection has ended (on the loop).
  void forget(Connection* connection);

  const FrontOptions options;
  SandboxSite* const site;
  // The sandboxes' listeners by sandbox id, for any thread (the lifecycle opens and closes them).
  std::mutex ports_mutex;
  std::map<std::string, std::vector<std::shared_ptr<Listener>>> sandbox_ports;
  // Loop only:
  std::vector<std::shared_ptr<Listener>> control_listeners;
  std::map<Connection*, std::weak_ptr<Connection>> connections;
  std::atomic<bool> stopped = false;

  boost::asio::io_context io{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard;
  WorkPool pool;
  std::thread loop;
};

/// One client connection: reads request heads, serves each through a handler (on the pool) or
/// relays it into the sandbox, keeps the connection alive between requests. Lives on the loop; its
/// completion handlers hold it alive.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(State& state, std::shared_ptr<Listener> listener, Socket socket);
  void start();
  /// Closes the client's socket and the relay, ending every operation (on the loop).
  void abort();
  const std::string& sandbox_id() const { return listener_->sandbox_id; }

 private:
  enum class BodyMode { none, whole, streamed };

  // Heads.
  void read_head();
  void on_head_bytes(ErrorCode error, std::size_t bytes);
  void handle_head();
  bool parse_head(std::string_view head);
  HttpRequest plain_request() const;

  // Requests served by a handler.
  void serve_with_handler(HttpHandler handler, bool is_long);
  void read_whole_body(HttpHandler handler, bool is_long);
  void stream_body(std::shared_ptr<BytePipe> pipe);
  void run_handler(HttpHandler handler, bool is_long, HttpRequest request, std::shared_ptr<BytePipe> body);
  void send_response(HttpResponse response, std::shared_ptr<BytePipe> body_source);
  void pump_response_body(std::shared_ptr<BytePipe> pipe);
  /// While a chunked answer streams: closes the connection when the client hangs up.
  void watch_for_hang_up(std::shared_ptr<BytePipe> pipe);
  /// While a handler works on a request read whole, marks `gone` if the client hangs up.
  void watch_while_handling(std::shared_ptr<std::atomic<bool>> gone);

  // Requests relayed into the sandbox, and the agent's own web routes, which are let in alike.
  /// Checks the request's credential as a proxied request's (agent/front/proxy_auth.h): the verdict
  /// when it may go on, else nullopt once the refusal or the cookie-setting redirect is answered.
  std::optional<ProxyAuthVerdict> let_in();
  void serve_agent_web_route();
  void proxy();
  void open_relay(const ProxyTarget& target);
  /// From now until it closes, the connection counts as its sandbox's activity (its idle timeout).
  void hold_activity();
  void on_relay(Result<UniqueFd> relay);
  void send_upstream_head();
  void forward_request_body();
  void read_upstream_head();
  void on_upstream_head(ErrorCode error);
  void forward_response_body();
  void relay_raw_body(std::uint64_t remaining);
  void finish_proxied();
  void tunnel();
  void upstream_failed(const std::string& sentence);

  // The terminal's WebSocket (defined in terminal_bridge.cpp, with the bridge itself).
  /// Checks the upgrade and the session's options, then opens the session on a worker.
  void open_terminal(const HttpRequest& head);
  /// Hands the connection over to a TerminalBridge, or answers why the session could not start.
  void on_terminal_session(Result<SessionConnection> session, bool tty);

  // Writing and ending.
  void write_then(std::string bytes, std::function<void()> next);
  void answer(HttpResponse response, bool keep_alive);
  void finish_exchange(bool keep_alive);
  void close();
  void arm_timer(std::chrono::milliseconds after);

  State& state_;
  std::shared_ptr<Listener> listener_;
  Socket socket_;
  boost::asio::steady_timer timer_;
  std::uint64_t timer_generation_ = 0;
  boost::beast::flat_buffer buffer_;  // bytes from the client not parsed yet
  bool closed_ = false;
  bool awaiting_first_byte_ = false;
  std::uint64_t exchange_ = 0;  // counts requests, so late completions of an earlier one are ignored

  // The request being served.
  std::optional<http::request_parser<http::buffer_body>> parser_;
  std::string host_;  // the Host header as sent
  bool keep_alive_ = true;
  std::vector<char> piece_;   // a body piece in flight
  std::string request_body_;  // a body read whole for a handler, as it arrives
  bool response_keep_alive_ = true;
  std::shared_ptr<BytePipe> request_pipe_;   // a request body streamed to a handler
  std::shared_ptr<BytePipe> response_pipe_;  // a response body streamed from a handler
  bool writing_ = false;
  // Self-referencing closures of a WebSocket relay and of the final drain; close() breaks the cycle.
  std::shared_ptr<std::function<void(int)>> tunnel_;
  std::shared_ptr<std::function<void()>> tunnel_drain_;
  /// The terminal this connection became; it holds the connection until it ends, close() aborts it.
  std::shared_ptr<TerminalBridge> terminal_;
  /// Itself, while a streamed answer waits for its handler's next bytes with no operation pending.
  std::shared_ptr<Connection> waiting_for_data_;

  // The relay into the sandbox, kept across requests while the server keeps it alive.
  std::optional<Socket> upstream_;
  int upstream_port_ = 0;
  boost::beast::flat_buffer upstream_buffer_;
  std::optional<http::response_parser<http::buffer_body>> response_parser_;
  std::string upstream_head_;
  bool upgrade_requested_ = false;
  bool chunked_to_client_ = false;
  bool close_delimited_ = false;
  std::string proxy_reason_;  // what the relay was for, in error sentences
  /// The sandbox counts as active while this connection is open, once a request on it was let in.
  SandboxActivity::Hold activity_;
};

}  // namespace modbox::front
