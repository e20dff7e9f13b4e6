#pragma once
// modboxd assembled: state, Podman, the sandbox service, the control API and the gateways.

#include <string>

#include "common/paths.h"
#include "common/result.h"

namespace modbox {

struct AgentConfig {
  AgentPaths paths;
  bool tcp = true;               // also serve the control API on loopback TCP (Bearer token)
  std::string tcp_host = "127.0.0.1";
  int tcp_port = 0;              // 0: any free port; `modbox agent env` tells which
  bool e2b = true;               // serve E2B's envd for every sandbox on loopback (E2B_SANDBOX_URL)
  int e2b_port = 0;              // 0: any free port; `modbox agent env --e2b` tells which
  std::string podman_socket;     // use this running service instead of starting one
  std::string runtime;           // OCI runtime override; empty: probe the host
  std::string helper_binary;     // the in-sandbox helper; empty: modbox-helper next to this executable
  std::string images_dir;        // images/ to build default images from; empty: find it (find_images_dir)
  double retention_days = 7;     // how long records of destroyed sandboxes are kept
  std::string terminal_assets;   // the web terminal's page; empty: share/modbox/terminal beside bin/
};

/// Runs the agent until SIGTERM or SIGINT. The caller must have blocked those signals in every
/// thread (block them before starting any thread) so that the agent can wait for them.
Result<void> run_agent(const AgentConfig& config);

}  // namespace modbox
