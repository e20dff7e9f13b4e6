#include "agent/gateway.h"

#include "agent/router.h"

namespace modbox {

Gateway::~Gateway() { close_all(); }

Result<int> Gateway::open(const std::string& sandbox_id, int preferred_port) {
  std::unique_ptr<HttpListener> old;
  {
    std::lock_guard lock(mutex_);
    if (auto it = listeners_.find(sandbox_id); it != listeners_.end()) {
      if (preferred_port == 0 || it->second->port() == preferred_port) return it->second->port();
      old = std::move(it->second);
      listeners_.erase(it);
    }
  }
  old.reset();
  auto handler = [this, sandbox_id](HttpRequest& request) { return backend_(sandbox_id, request); };
  auto listener = HttpListener::start({.host = host_, .port = preferred_port}, handler, threads_per_sandbox);
  if (!listener && preferred_port != 0)
    listener = HttpListener::start({.host = host_, .port = 0}, handler, threads_per_sandbox);
  if (!listener) return std::unexpected(listener.error());
  int port = (*listener)->port();
  std::lock_guard lock(mutex_);
  listeners_[sandbox_id] = std::move(*listener);
  return port;
}

void Gateway::close(const std::string& sandbox_id) {
  std::unique_ptr<HttpListener> listener;
  {
    std::lock_guard lock(mutex_);
    auto it = listeners_.find(sandbox_id);
    if (it == listeners_.end()) return;
    listener = std::move(it->second);
    listeners_.erase(it);
  }
  // Stopping joins the listener's thread; a request in flight on it may be the caller, so the
  // join happens off this thread.
  std::thread([listener = std::move(listener)]() mutable { listener.reset(); }).detach();
}

void Gateway::close_all() {
  std::map<std::string, std::unique_ptr<HttpListener>> listeners;
  {
    std::lock_guard lock(mutex_);
    listeners.swap(listeners_);
  }
}

HttpResponse serve_sandbox_api(SandboxService& sandboxes, const std::string& sandbox_id, HttpRequest& request) {
  if (request.method == "POST" && request.path == "/modbox/api/exec") {
    // Authenticate before looking at the body, so an unauthenticated caller learns nothing.
    auto sandbox = sandboxes.authorize(sandbox_id, request.header("authorization"));
    if (!sandbox) {
      HttpResponse response = error_response(sandbox.error());
      if (sandbox.error().kind == ErrorKind::unauthorized) response.headers["WWW-Authenticate"] = "Bearer";
      return response;
    }
    auto exec = parse_exec_request(request.body);
    if (!exec) return error_response(exec.error());
    auto result = sandboxes.run_exec(*sandbox, *exec);
    if (!result) return error_response(result.error());
    HttpResponse response = json_response(200, exec_result_to_json(*result));
    // Which shell ran the command: bash, or sh in an image without bash (the JSON keeps the seed's fields).
    if (!result->shell.empty()) response.headers["X-Modbox-Shell"] = result->shell;
    return response;
  }
  return error_response(Error{ErrorKind::not_found,
                              "no route " + request.method + " " + request.path +
                                  " on this sandbox: it serves POST /modbox/api/exec (other routes come with the "
                                  "image's web services)",
                              {}});
}

}  // namespace modbox
