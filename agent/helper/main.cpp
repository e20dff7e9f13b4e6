// modbox-helper: PID 1 of every modbox sandbox. Started by the container runtime as
//   /.modbox/helper [--socket PATH] [--user SPEC] [--exit-with-child] [-- ENTRYPOINT ARGS...]
// it starts the image's entrypoint (when there is one; the provision's `command` instead, with
// --exit-with-child, and then the sandbox ends when it exits), keeps its output in a bounded log
// beside the socket, reaps zombies, forwards signals, and serves the agent's requests on the unix socket. Static, so it
// runs in any image. With --user (the image's USER) it runs the entrypoint and every command as that user; it runs as
// root itself.

#include <cstdio>
#include <cstring>
#include <string>

#include "agent/helper/server.h"

int main(int argc, char** argv) {
  modbox::helper::ServerOptions options;
  options.socket_path = std::string(modbox::helper::socket_directory) + "/" + std::string(modbox::helper::socket_name);
  int i = 1;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg == "--socket" && i + 1 < argc) {
      options.socket_path = argv[++i];
    } else if (arg == "--user" && i + 1 < argc) {
      options.user_spec = argv[++i];
    } else if (arg == "--exit-with-child") {
      options.exit_with_child = true;
    } else if (arg == "--version") {
      std::printf("modbox-helper %s (protocol %u)\n", MODBOX_VERSION, modbox::helper::protocol_version);
      return 0;
    } else {
      std::fprintf(stderr,
                   "usage: modbox-helper [--socket PATH] [--user SPEC] [--exit-with-child] [-- COMMAND [ARGS...]]\n");
      return 2;
    }
  }
  for (; i < argc; ++i) options.entrypoint.emplace_back(argv[i]);

  auto server = modbox::helper::HelperServer::create(options);
  if (!server) {
    std::fprintf(stderr, "modbox-helper: %s\n", server.error().message.c_str());
    modbox::helper::record_startup_failure(options.socket_path, server.error().message);
    return 1;
  }
  return (*server)->run();
}
