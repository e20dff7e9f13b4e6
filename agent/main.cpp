// modboxd: the per-user agent. Parses flags, blocks the signals it waits for, runs the agent.

#include <signal.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "agent/agent.h"

int main(int argc, char** argv) {
  // Blocked before any thread starts, so every thread inherits the mask and only the agent's
  // sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Every connection and every WebSocket relay is a descriptor or two: the default soft limit of
  // 1024 would refuse connections at about 500 WebSockets. (Sandboxes get theirs from the agent's
  // containers.conf, not from this.)
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  modbox::AgentConfig config{.paths = modbox::AgentPaths::from_environment()};
  std::string state_dir, runtime_dir;
  bool no_tcp = false;
  CLI::App app{"modboxd: the modbox agent. Manages rootless Podman sandboxes and serves their API."};
  app.set_version_flag("--version", MODBOX_VERSION);
  app.add_option("--state-dir", state_dir, "Records and token (default $XDG_DATA_HOME/modbox)");
  app.add_option("--runtime-dir", runtime_dir, "Sockets, pid, logs (default $XDG_RUNTIME_DIR/modbox)");
  app.add_flag("--no-tcp", no_tcp, "Serve the control API on the unix socket only");
  app.add_option("--tcp-port", config.tcp_port, "Loopback TCP port of the control API (default: any free port)")
      ->check(CLI::Range(0, 65535));
  bool no_e2b = false;
  app.add_flag("--no-e2b", no_e2b, "Do not serve E2B's envd (E2B_SANDBOX_URL) on a loopback port");
  app.add_option("--e2b-port", config.e2b_port,
                 "Loopback TCP port serving E2B's envd for every sandbox (default: any free port)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--podman-socket", config.podman_socket, "Use this running Podman service instead of starting one");
  app.add_option("--images-dir", config.images_dir, "images/ to build missing default images from on first use")
      ->envname("MODBOX_IMAGES_DIR");
  app.add_option("--helper", config.helper_binary,
                 "The static modbox-helper binary mounted into every sandbox (default: next to modboxd)");
  app.add_option("--terminal-assets", config.terminal_assets,
                 "The web terminal's page and xterm.js (default: ../share/modbox/terminal beside modboxd)");
  app.add_option("--retention-days", config.retention_days,
                 "Days the records of destroyed sandboxes are kept before they are pruned (default 7; 0: prune at "
                 "once; fractions allowed)")
      ->check(CLI::Range(0.0, 36500.0));
  app.add_option("--runtime", config.runtime, "OCI runtime (default: probed from the host's cgroup layout)")
      ->envname("MODBOX_RUNTIME");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;  // 2: usage error, as for modbox
  }
  if (!state_dir.empty()) config.paths.state_dir = state_dir;
  if (!runtime_dir.empty()) config.paths.runtime_dir = runtime_dir;
  config.tcp = !no_tcp;
  config.e2b = !no_e2b;

  try {
    if (auto ran = modbox::run_agent(config); !ran) {
      std::fprintf(stderr, "modboxd: %s\n", ran.error().message.c_str());
      return 1;
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "modboxd: fatal: %s\n", error.what());
    return 1;
  }
  return 0;
}
