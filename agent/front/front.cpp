// The front's event loop, listeners and connection registry on Boost.Asio; the HTTP exchange of one
// connection is in connection.cpp. Boost is included by these two translation units only.

#include "agent/front/front.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <future>

#include "agent/front/connection.h"
#include "agent/log.h"
#include "common/models.h"

namespace modbox {

namespace {

using front::Acceptor;
using front::Listener;
using front::Protocol;

int local_port(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return 0;
  if (address.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
  if (address.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
  return 0;
}

/// A listening TCP socket on host:port (0: any free port).
Result<std::unique_ptr<Acceptor>> listen_tcp(boost::asio::io_context& io, const std::string& host, int port) {
  boost::system::error_code error;
  auto address = boost::asio::ip::make_address(host, error);
  if (error) return fail(ErrorKind::bad_request, "'" + host + "' is not an IP address");
  boost::asio::ip::tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  auto acceptor = std::make_unique<Acceptor>(io);
  Protocol protocol(endpoint.protocol().family(), IPPROTO_TCP);
  acceptor->open(protocol, error);
  // A sandbox URL keeps its port across agent restarts: rebind it while old connections linger.
  if (!error) acceptor->set_option(boost::asio::socket_base::reuse_address(true), error);
  if (!error) acceptor->bind(Protocol::endpoint(endpoint), error);
  if (!error) acceptor->listen(SOMAXCONN, error);
  if (error)
    return fail(port == 0 ? ErrorKind::internal : ErrorKind::conflict,
                "cannot listen on " + host + ":" + std::to_string(port) + " (" + error.message() + ")");
  return acceptor;
}

/// A listening unix socket at `path`, mode 0600 before anyone can connect.
Result<std::unique_ptr<Acceptor>> listen_unix(boost::asio::io_context& io, const std::string& path) {
  boost::system::error_code error;
  ::unlink(path.c_str());
  auto acceptor = std::make_unique<Acceptor>(io);
  acceptor->open(Protocol(AF_UNIX, 0), error);
  if (!error) {
    mode_t previous = ::umask(0177);
    acceptor->bind(Protocol::endpoint(boost::asio::local::stream_protocol::endpoint(path)), error);
    ::umask(previous);
  }
  if (!error) ::chmod(path.c_str(), 0600);
  if (!error) acceptor->listen(SOMAXCONN, error);
  if (error) return fail(ErrorKind::internal, "cannot listen on unix socket " + path + " (" + error.message() + ")");
  return acceptor;
}

}  // namespace

Front::Front(FrontOptions options, SandboxSite* site)
    : state_(std::make_shared<front::State>(std::move(options), site)) {
  state_->loop = std::thread([state = state_.get()] {
    for (;;) {
      try {
        state->io.run();
        return;
      } catch (const std::exception& error) {
        // A bug in a completion handler must not take every sandbox URL down with it.
        log_error(std::string("unhandled exception on the front's loop: ") + error.what());
      }
    }
  });
}

Front::~Front() {
  stop();
}

bool is_agent_web_route(std::string_view path) {
  for (std::string_view prefix : {std::string_view("/terminal"), std::string_view("/mcp/terminal")})
    if (path.starts_with(prefix) && (path.size() == prefix.size() || path[prefix.size()] == '/')) return true;
  return false;
}

namespace front {

State::State(FrontOptions options_in, SandboxSite* site_in)
    : options(std::move(options_in)),
      site(site_in),
      guard(boost::asio::make_work_guard(io)),
      pool(options.worker_threads_max, options.long_calls_max) {}

void State::run_on_loop(const std::function<void()>& work) {
  if (loop.get_id() == std::this_thread::get_id()) return work();
  if (stopped) return;
  std::promise<void> done;
  auto finished = done.get_future();
  boost::asio::post(io, [&] {
    work();
    done.set_value();
  });
  finished.wait();
}

void State::accept(const std::shared_ptr<Listener>& listener) {
  listener->acceptor->async_accept([this, listener](boost::system::error_code error, Socket socket) {
    if (listener->closed) return;
    if (error) {
      // Out of file descriptors, most likely: pause accepting a moment rather than spin.
      if (error == boost::asio::error::operation_aborted) return;
      log_error("accepting a connection on port " + std::to_string(listener->host_port) + ": " + error.message());
      auto timer = std::make_shared<boost::asio::steady_timer>(io, std::chrono::milliseconds(100));
      timer->async_wait([this, listener, timer](boost::system::error_code) {
        if (!listener->closed) accept(listener);
      });
      return;
    }
    auto connection = std::make_shared<Connection>(*this, listener, std::move(socket));
    connections[connection.get()] = connection;
    connection->start();
    accept(listener);
  });
}

void State::forget(Connection* connection) {
  connections.erase(connection);
}

void State::close_listener(Listener& listener) {
  listener.closed = true;
  boost::system::error_code ignored;
  listener.acceptor->close(ignored);
  if (!listener.unix_path.empty()) ::unlink(listener.unix_path.c_str());
}

}  // namespace front

Result<int> Front::listen(const ListenOptions& options, HttpHandler handler, LongCallPredicate is_long) {
  Result<int> result = fail(ErrorKind::unavailable, "the agent is stopping");
  state_->run_on_loop([&] {
    auto acceptor = options.unix_path.empty() ? listen_tcp(state_->io, options.host, options.port)
                                              : listen_unix(state_->io, options.unix_path);
    if (!acceptor) {
      result = std::unexpected(acceptor.error());
      return;
    }
    auto listener = std::make_shared<Listener>();
    listener->handler = std::move(handler);
    listener->is_long = std::move(is_long);
    listener->options = options;
    listener->over_tcp = options.unix_path.empty();
    listener->unix_path = options.unix_path;
    listener->acceptor = std::move(*acceptor);
    listener->host_port = listener->over_tcp ? local_port(listener->acceptor->native_handle()) : 0;
    state_->control_listeners.push_back(listener);
    state_->accept(listener);
    result = listener->host_port;
  });
  return result;
}

Result<int> Front::open_sandbox_port(const std::string& sandbox_id, int sandbox_port, int preferred_port) {
  // Called by the lifecycle under its own lock, which the loop may be waiting for: this binds on the
  // calling thread and hands the listener to the loop without waiting for it.
  std::lock_guard lock(state_->ports_mutex);
  if (state_->stopped) return fail(ErrorKind::unavailable, "the agent is stopping");
  auto& listeners = state_->sandbox_ports[sandbox_id];
  for (auto it = listeners.begin(); it != listeners.end(); ++it) {
    if ((*it)->sandbox_port != sandbox_port) continue;
    if (preferred_port == 0 || (*it)->host_port == preferred_port) return (*it)->host_port;
    boost::asio::post(state_->io, [state = state_.get(), listener = *it] { state->close_listener(*listener); });
    listeners.erase(it);
    break;
  }
  auto acceptor = listen_tcp(state_->io, state_->options.sandbox_host, preferred_port);
  if (!acceptor && preferred_port != 0) acceptor = listen_tcp(state_->io, state_->options.sandbox_host, 0);
  if (!acceptor) return std::unexpected(acceptor.error());
  auto listener = std::make_shared<Listener>();
  listener->sandbox = true;
  listener->sandbox_id = sandbox_id;
  listener->sandbox_port = sandbox_port;
  listener->over_tcp = true;
  // The sandbox URL streams uploads to the files API; declared bodies beyond that are refused from
  // their headers.
  listener->options.body_max_bytes = limits::upload_request_max_bytes;
  listener->options.stream_multipart = true;
  listener->acceptor = std::move(*acceptor);
  listener->host_port = local_port(listener->acceptor->native_handle());
  listeners.push_back(listener);
  boost::asio::post(state_->io, [state = state_.get(), listener] {
    if (!listener->closed) state->accept(listener);
  });
  return listener->host_port;
}

void Front::close_sandbox(const std::string& sandbox_id) {
  std::vector<std::shared_ptr<Listener>> closing;
  {
    std::lock_guard lock(state_->ports_mutex);
    auto it = state_->sandbox_ports.find(sandbox_id);
    if (it != state_->sandbox_ports.end()) {
      closing = std::move(it->second);
      state_->sandbox_ports.erase(it);
    }
  }
  boost::asio::post(state_->io, [state = state_.get(), closing = std::move(closing), sandbox_id] {
    for (auto& listener : closing) state->close_listener(*listener);
    std::vector<std::shared_ptr<front::Connection>> doomed;
    for (auto& [raw, weak] : state->connections)
      if (auto connection = weak.lock(); connection && connection->sandbox_id() == sandbox_id)
        doomed.push_back(connection);
    for (auto& connection : doomed) connection->abort();
  });
}

void Front::stop() {
  if (!state_ || state_->stopped) return;
  std::map<std::string, std::vector<std::shared_ptr<Listener>>> sandbox_ports;
  {
    std::lock_guard lock(state_->ports_mutex);
    sandbox_ports.swap(state_->sandbox_ports);
  }
  state_->run_on_loop([&] {
    for (auto& listener : state_->control_listeners) state_->close_listener(*listener);
    for (auto& [id, listeners] : sandbox_ports)
      for (auto& listener : listeners) state_->close_listener(*listener);
    state_->control_listeners.clear();
    std::vector<std::shared_ptr<front::Connection>> open;
    for (auto& [raw, weak] : state_->connections)
      if (auto connection = weak.lock()) open.push_back(connection);
    for (auto& connection : open) connection->abort();
  });
  state_->stopped = true;
  state_->guard.reset();
  state_->io.stop();
  if (state_->loop.joinable()) state_->loop.join();
}

Front::Stats Front::stats() const {
  Stats stats;
  state_->run_on_loop([&] {
    stats.connections = state_->connections.size();
    stats.listeners = state_->control_listeners.size();
  });
  {
    std::lock_guard lock(state_->ports_mutex);
    for (const auto& [id, listeners] : state_->sandbox_ports) stats.listeners += listeners.size();
  }
  stats.worker_threads = state_->pool.threads();
  stats.long_calls = state_->pool.long_in_flight();
  return stats;
}

namespace {

/// HttpListener over a Front of its own (tests, and any single server).
class FrontListener final : public HttpListener {
 public:
  explicit FrontListener(int threads)
      : front_(FrontOptions{.worker_threads_max = static_cast<std::size_t>(std::max(threads, 1)) + 64,
                            .long_calls_max = 64}) {}
  Result<void> start(const ListenOptions& options, HttpHandler handler) {
    auto port = front_.listen(options, std::move(handler));
    if (!port) return std::unexpected(port.error());
    port_ = *port;
    return {};
  }
  int port() const override { return port_; }
  void stop() override { front_.stop(); }

 private:
  Front front_;
  int port_ = 0;
};

}  // namespace

Result<std::unique_ptr<HttpListener>> HttpListener::start(const ListenOptions& options, HttpHandler handler,
                                                          int threads) {
  auto listener = std::make_unique<FrontListener>(threads);
  if (auto started = listener->start(options, std::move(handler)); !started) return std::unexpected(started.error());
  return std::unique_ptr<HttpListener>(std::move(listener));
}

}  // namespace modbox
