#include "agent/agent.h"

#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "agent/e2b/control_plane.h"
#include "agent/e2b/envd_front.h"
#include "agent/front/front.h"
#include "agent/gateway.h"
#include "agent/image_build.h"
#include "agent/image_builder.h"
#include "agent/image_service.h"
#include "agent/log.h"
#include "agent/podman_backend.h"
#include "agent/podman_service.h"
#include "agent/routes.h"
#include "agent/sandbox_api.h"
#include "agent/sandbox_service.h"
#include "agent/service_notify.h"
#include "agent/ttl_timers.h"
#include "common/system.h"

namespace modbox {

namespace {

/// Holds an exclusive lock on the state's lock file for the agent's lifetime.
Result<UniqueFd> lock_state(const AgentPaths& paths) {
  UniqueFd fd(::open(paths.lock_file().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) return std::unexpected(system_error("open", paths.lock_file(), errno));
  // The CLI tells whether an agent lives by taking this lock for an instant (agent_alive): a
  // lock that is busy for a moment is that, not another agent.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  bool locked = ::flock(fd.get(), LOCK_EX | LOCK_NB) == 0;
  while (!locked && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    locked = ::flock(fd.get(), LOCK_EX | LOCK_NB) == 0;
  }
  if (!locked) {
    auto pid = read_file(paths.pid_file(), 64);
    return fail(ErrorKind::conflict, "another modboxd is already running for " + paths.state_dir.string() +
                                         (pid ? " (pid " + pid->substr(0, pid->find('\n')) + ")" : ""));
  }
  return fd;
}

/// Reads a secret or identifier file, creating it with `make()` on first start.
Result<std::string> read_or_create(const std::filesystem::path& path, std::string (*make)()) {
  if (auto existing = read_file(path, 4096); existing && !existing->empty()) {
    std::string value = *existing;
    while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.pop_back();
    return value;
  }
  std::string value = make();
  if (auto written = write_file_atomic(path, value + "\n", 0600); !written) return std::unexpected(written.error());
  return value;
}

HttpHandler with_token(HttpHandler inner, std::string token) {
  return [inner = std::move(inner), token = std::move(token)](HttpRequest& request) {
    if (request.over_tcp) {
      const std::string* authorization = request.header("authorization");
      static constexpr std::string_view prefix = "Bearer ";
      if (authorization == nullptr || !authorization->starts_with(prefix) ||
          !constant_time_equals(std::string_view(*authorization).substr(prefix.size()), token)) {
        HttpResponse response = error_response(Error{
            ErrorKind::unauthorized, "this API needs Authorization: Bearer <token> (see `modbox agent env`)", {}});
        response.headers["WWW-Authenticate"] = "Bearer";
        return response;
      }
    }
    return inner(request);
  };
}

/// `name` installed beside this executable (build/bin, or PREFIX/bin).
std::string sibling_binary(const std::string& name) {
  std::error_code error;
  auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? name : (self.parent_path() / name).string();
}

/// The in-sandbox helper: beside modboxd in a build tree, else where `cmake --install` puts it,
/// PREFIX/libexec/modbox beside PREFIX/bin (it is no command of its own).
std::string find_helper_binary() {
  std::string sibling = sibling_binary("modbox-helper");
  std::error_code error;
  auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (::access(sibling.c_str(), X_OK) == 0 || error) return sibling;
  auto installed = (self.parent_path() / MODBOX_HELPER_FROM_BIN / "modbox-helper").lexically_normal();
  return ::access(installed.c_str(), X_OK) == 0 ? installed.string() : sibling;
}

/// The systemd TTL timers of this agent: they run the modbox CLI beside it against this agent's state.
std::unique_ptr<SystemdTtlTimers> make_ttl_timers(const AgentConfig& config) {
  SystemdTimersConfig timers{.cli_binary = sibling_binary("modbox"),
                             .manager_runtime_dir = "/run/user/" + std::to_string(::getuid()),
                             .user = current_user_name()};
  timers.command_env = {{"MODBOX_STATE_DIR", std::filesystem::absolute(config.paths.state_dir).string()},
                        {"MODBOX_RUNTIME_DIR", std::filesystem::absolute(config.paths.runtime_dir).string()}};
  // An agent the timer starts must see Podman's runtime state where this one does, and find the same tools.
  for (const char* name : {"PATH", "XDG_RUNTIME_DIR"})
    if (const char* value = std::getenv(name); value != nullptr && *value != '\0') timers.command_env[name] = value;
  if (!config.runtime.empty()) timers.command_env["MODBOX_RUNTIME"] = config.runtime;
  if (!config.images_dir.empty())
    timers.command_env["MODBOX_IMAGES_DIR"] = std::filesystem::absolute(config.images_dir).string();
  return SystemdTtlTimers::create(std::move(timers));
}

void wait_for_termination() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  int received = 0;
  while (sigwait(&signals, &received) != 0) {
  }
  log_info(std::string("received ") + ::strsignal(received) + ", shutting down");
}

}  // namespace

Result<void> run_agent(const AgentConfig& config) {
  // Before any child starts: the Podman service must not see NOTIFY_SOCKET.
  ServiceNotifier systemd = ServiceNotifier::take_from_environment();
  const AgentPaths& paths = config.paths;
  for (const auto& directory : {paths.state_dir, paths.runtime_dir})
    if (auto made = make_directories(directory, 0700); !made) return std::unexpected(made.error());
  auto lock = lock_state(paths);
  if (!lock) return std::unexpected(lock.error());
  if (auto written = write_file_atomic(paths.pid_file(), std::to_string(::getpid()) + "\n", 0600); !written)
    return std::unexpected(written.error());
  auto token = read_or_create(paths.token_file(), [] { return random_hex(32); });
  if (!token) return std::unexpected(token.error());
  auto agent_id = read_or_create(paths.agent_id_file(), [] { return new_uuid(); });
  if (!agent_id) return std::unexpected(agent_id.error());
  auto store = RecordStore::open(paths.sandboxes_dir());
  if (!store) return std::unexpected(store.error());
  auto image_store = RecordStore::open(paths.images_dir());
  if (!image_store) return std::unexpected(image_store.error());
  auto registry_store = RecordStore::open(paths.registries_dir());
  if (!registry_store) return std::unexpected(registry_store.error());
  ImageService images(std::move(*image_store), std::move(*registry_store));
  if (auto loaded = images.load(); !loaded) return std::unexpected(loaded.error());
  std::unique_ptr<ScriptImageBuilder> builder;
  if (auto images_dir = find_images_dir(config.images_dir); images_dir) {
    std::vector<std::string> names;
    for (const auto& builtin : builtin_images()) names.push_back(builtin.name);
    builder = std::make_unique<ScriptImageBuilder>(*images_dir, paths.runtime_dir, names);
    log_info("default images that are not built yet are built on first use from " + images_dir->string());
  } else {
    log_info("no images/ directory found (--images-dir): default images must be built with `modbox images build`");
  }

  std::string podman_socket = config.podman_socket.empty() ? paths.podman_socket().string() : config.podman_socket;
  auto podman = make_libpod_client(podman_socket);
  HostRuntime runtime = probe_host_runtime(config.runtime);
  std::unique_ptr<PodmanService> podman_service;
  if (config.podman_socket.empty()) {
    podman_service = std::make_unique<PodmanService>(
        PodmanServiceConfig{podman_socket, paths.containers_conf().string(), paths.podman_log_file().string(), runtime},
        [&podman] { return podman->ping().has_value(); });
    if (auto started = podman_service->start(); !started) return std::unexpected(started.error());
    log_info("runtime " + runtime.oci_runtime + " (" + runtime.reason + "), cgroup manager " + runtime.cgroup_manager);
  }

  auto helpers = make_helper_client();
  std::string helper_binary = config.helper_binary.empty() ? find_helper_binary() : config.helper_binary;
  if (::access(helper_binary.c_str(), X_OK) != 0)
    log_error("the in-sandbox helper " + helper_binary + " is missing: sandboxes will fail to start (--helper PATH)");
  auto ttl_timers = make_ttl_timers(config);
  TtlLayer systemd_layer = ttl_timers->layer();
  log_info(std::string("TTL systemd timers: ") + (systemd_layer.active ? "active" : "not available") + " (" +
           systemd_layer.detail + ")");
  Gateway gateway;
  PodmanBackend backend({.agent_id = *agent_id,
                         .images = &images,
                         .builder = builder.get(),
                         .helper_binary = helper_binary,
                         .sandbox_runtime_root = paths.sandbox_runtime_dirs()},
                        *podman);
  SandboxService sandboxes({.created_by = current_user_name(),
                            .images = &images,
                            .helpers = helpers.get(),
                            .retention = std::chrono::seconds(std::llround(config.retention_days * 86400)),
                            .timers = ttl_timers.get()},
                           backend, std::move(*store), gateway);
  TerminalPage terminal_page = TerminalPage::load(
      config.terminal_assets.empty() ? default_terminal_assets_dir() : std::filesystem::path(config.terminal_assets));
  if (!terminal_page.missing().empty())
    log_error("the web terminal's files are missing in " + terminal_page.directory().string() +
              " (--terminal-assets DIR): /terminal/ answers 503");
  SandboxApi sandbox_api(sandboxes, *token, &terminal_page);
  // E2B's envd for every sandbox, through the same sandbox API and helpers as the sandbox URLs.
  e2b::EnvdFront envd(sandboxes, sandbox_api, *helpers, *token);
  // Declared after what it serves, so that however run_agent returns, the front stops first.
  Front front(FrontOptions{.owner_token = *token}, &gateway);
  gateway.connect(front, sandboxes, sandbox_api, *helpers);
  sandboxes.load();

  std::optional<std::string> api_url;
  std::optional<int> e2b_port;
  Router router;
  register_sandbox_routes(router, sandboxes);
  register_image_routes(router, images);
  register_registry_routes(router, images);
  // Contexts being built are spooled to disk (up to 256 MiB each); what a crash left is stale.
  std::error_code ignored;
  std::filesystem::remove_all(paths.build_contexts_dir(), ignored);
  if (auto made = make_directories(paths.build_contexts_dir(), 0700); !made) return std::unexpected(made.error());
  ImageBuildService image_builds(images, *podman);
  register_image_build_route(router, image_builds, paths.build_contexts_dir());
  register_agent_routes(router, [&] {
    auto ping = podman->ping();
    return AgentStatus{
        .version = MODBOX_VERSION,
        .pid = ::getpid(),
        .user = current_user_name(),
        .state_dir = paths.state_dir.string(),
        .socket_path = paths.agent_socket().string(),
        .api_url = api_url,
        .e2b_url = e2b_port ? std::optional("http://127.0.0.1:" + std::to_string(*e2b_port)) : std::nullopt,
        .e2b_domain = e2b_port ? std::optional("localhost:" + std::to_string(*e2b_port)) : std::nullopt,
        .podman_ready = ping.has_value(),
        .podman_detail = ping ? "podman service at " + podman_socket : ping.error().message,
        .runtime = runtime.oci_runtime,
        .live_sandboxes = sandboxes.live_count(),
        .ttl_layers = sandboxes.ttl_layers()};
  });
  // E2B's control plane under /e2b, with E2B's credential (X-API-Key) and error shape (control_plane.h).
  Router e2b_router;
  e2b::register_e2b_routes(e2b_router, {.sandboxes = sandboxes, .images = images, .domain = [&e2b_port] {
                                          return e2b_port ? std::optional("localhost:" + std::to_string(*e2b_port))
                                                          : std::nullopt;
                                        }});
  HttpHandler modbox_handler =
      with_token([&router](HttpRequest& request) { return router.dispatch(request); }, *token);
  HttpHandler handler = [&e2b_router, &modbox_handler, &token](HttpRequest& request) {
    if (e2b::is_e2b_path(request.path)) return e2b::serve(e2b_router, *token, request);
    return modbox_handler(request);
  };

  // Reconcile before serving, so the first answer after a restart already tells the truth; if
  // Podman does not come up in time, serve anyway and keep trying in the background.
  auto try_reconcile = [&](std::chrono::milliseconds wait) {
    bool ready = podman_service ? podman_service->wait_ready(wait) : podman->ping().has_value();
    if (!ready) return false;
    if (auto reconciled = sandboxes.reconcile(); !reconciled) {
      log_error(reconciled.error().message);
      return false;
    }
    log_info("reconciled sandbox records with podman");
    return true;
  };
  bool reconciled = try_reconcile(std::chrono::seconds(20));

  // wait, exec, snapshot, an image build and a followed log may take minutes: they run as long calls,
  // never in the threads short calls need.
  LongCallPredicate is_long = [](const HttpRequest& request) {
    if (e2b::is_e2b_path(request.path)) return e2b::is_long_call(request);
    if (request.method == "GET" && request.path.ends_with("/logs")) {
      auto query = parse_logs_query(request.query);
      return query && query->follow;
    }
    return request.method == "POST" &&
           (request.path == "/sandboxes/wait" || request.path == "/sandboxes/exec" ||
            request.path == "/sandboxes/snapshot" || request.path == "/sandbox-images/build");
  };
  // Before the control API, which reports its port.
  if (config.e2b) {
    auto port = front.listen(
        {.host = "127.0.0.1",
         .port = config.e2b_port,
         .body_max_bytes = e2b::envd_body_max_bytes,
         .stream_multipart = true},
        [&envd](HttpRequest& request) { return envd.serve(request); }, [](const HttpRequest&) { return true; });
    if (!port) return std::unexpected(port.error());
    e2b_port = *port;
    log_info("E2B's envd for every sandbox at http://127.0.0.1:" + std::to_string(*port));
  }
  // Multipart bodies (a build's context) are streamed to their handler; others stay within 1 MiB.
  std::uint64_t body_max = build_context_max_bytes + build_containerfile_max_bytes + (1 << 20);
  if (auto listening = front.listen(
          {.unix_path = paths.agent_socket().string(), .body_max_bytes = body_max, .stream_multipart = true}, handler,
          is_long);
      !listening)
    return std::unexpected(listening.error());
  if (config.tcp) {
    auto port = front.listen(
        {.host = config.tcp_host, .port = config.tcp_port, .body_max_bytes = body_max, .stream_multipart = true},
        handler, is_long);
    if (!port) return std::unexpected(port.error());
    api_url = "http://" + config.tcp_host + ":" + std::to_string(*port);
  }
  log_info("modboxd " MODBOX_VERSION " serving " + paths.agent_socket().string() +
           (api_url ? " and " + *api_url : std::string()));
  // Under a unit of Type=notify (`modbox agent install-unit`), `systemctl --user start` returns now.
  systemd.notify("READY=1\nSTATUS=serving " + paths.agent_socket().string());

  std::atomic<bool> stopping = false;
  std::thread reconciler;
  if (!reconciled)
    reconciler = std::thread([&] {
      while (!stopping && !try_reconcile(std::chrono::seconds(2)))
        for (int i = 0; i < 10 && !stopping; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    });
  sandboxes.start_reaper();

  wait_for_termination();
  systemd.notify("STOPPING=1");
  stopping = true;
  if (reconciler.joinable()) reconciler.join();
  front.stop();
  sandboxes.shutdown();
  if (podman_service) podman_service->stop();
  ::unlink(paths.agent_socket().c_str());
  ::unlink(paths.pid_file().c_str());
  log_info("modboxd stopped; sandboxes keep running and are picked up at the next start");
  return {};
}

}  // namespace modbox
