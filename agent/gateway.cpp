#include "agent/gateway.h"

namespace modbox {

Gateway::~Gateway() { close_all(); }

Result<int> Gateway::open(const std::string& sandbox_id, int sandbox_port, int preferred_port) {
  std::unique_ptr<HttpListener> old;
  {
    std::lock_guard lock(mutex_);
    if (auto it = listeners_.find({sandbox_id, sandbox_port}); it != listeners_.end()) {
      if (preferred_port == 0 || it->second->port() == preferred_port) return it->second->port();
      old = std::move(it->second);
      listeners_.erase(it);
    }
  }
  old.reset();
  auto handler = [this, sandbox_id](HttpRequest& request) { return backend_(sandbox_id, request); };
  ListenOptions options{.host = host_,
                        .port = preferred_port,
                        .body_max_bytes = limits::upload_request_max_bytes,
                        .stream_multipart = true};
  if (precheck_)
    options.precheck = [this, sandbox_id](const HttpRequest& request) { return precheck_(sandbox_id, request); };
  auto listener = HttpListener::start(options, handler, threads_per_sandbox);
  if (!listener && preferred_port != 0) {
    options.port = 0;
    listener = HttpListener::start(options, handler, threads_per_sandbox);
  }
  if (!listener) return std::unexpected(listener.error());
  int port = (*listener)->port();
  std::lock_guard lock(mutex_);
  listeners_[{sandbox_id, sandbox_port}] = std::move(*listener);
  return port;
}

void Gateway::close(const std::string& sandbox_id) {
  std::vector<std::unique_ptr<HttpListener>> listeners;
  {
    std::lock_guard lock(mutex_);
    auto it = listeners_.lower_bound({sandbox_id, 0});
    while (it != listeners_.end() && it->first.first == sandbox_id) {
      listeners.push_back(std::move(it->second));
      it = listeners_.erase(it);
    }
  }
  if (listeners.empty()) return;
  // Stopping joins the listener's thread; a request in flight on it may be the caller, so the
  // join happens off this thread.
  std::thread([listeners = std::move(listeners)]() mutable { listeners.clear(); }).detach();
}

void Gateway::close_all() {
  std::map<std::pair<std::string, int>, std::unique_ptr<HttpListener>> listeners;
  {
    std::lock_guard lock(mutex_);
    listeners.swap(listeners_);
  }
}

}  // namespace modbox
