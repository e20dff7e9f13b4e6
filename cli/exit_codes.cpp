#include "cli/exit_codes.h"

namespace modbox::exit_status {

int for_error(const Error& error) {
  switch (error.kind) {
    case ErrorKind::unavailable: return agent_unavailable;
    case ErrorKind::not_found: return not_found;
    case ErrorKind::timeout: return timeout;
    default: return exit_status::error;
  }
}

std::string help_footer() {
  return "Exit status:\n"
         "  0  success\n"
         "  1  error (the agent refused the request, Podman or the sandbox failed)\n"
         "  2  usage error (unknown command or option, bad argument)\n"
         "  3  modboxd is unavailable (not running for `agent status`, not answering, or its Podman is down)\n"
         "  4  not found (no such sandbox, image, registry, process or file)\n"
         "  5  timed out (`wait` or `provision --wait` ran out of time)\n"
         "  exec, shell: the command's own status once it ran";
}

}  // namespace modbox::exit_status
