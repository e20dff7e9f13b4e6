#include "agent/service_notify.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "agent/log.h"
#include "common/unique_fd.h"

namespace modbox {

ServiceNotifier ServiceNotifier::take_from_environment() {
  ServiceNotifier notifier;
  if (const char* path = std::getenv("NOTIFY_SOCKET"); path != nullptr) notifier.socket_path_ = path;
  ::unsetenv("NOTIFY_SOCKET");
  return notifier;
}

void ServiceNotifier::notify(const std::string& state) const {
  if (socket_path_.empty()) return;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof address.sun_path) {
    log_error("NOTIFY_SOCKET is too long: " + socket_path_);
    return;
  }
  std::memcpy(address.sun_path, socket_path_.data(), socket_path_.size());
  // A leading '@' names an abstract socket, whose name starts with a NUL byte.
  if (address.sun_path[0] == '@') address.sun_path[0] = '\0';
  socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_path_.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid() || ::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
                              reinterpret_cast<const sockaddr*>(&address), length) < 0)
    log_error("cannot notify systemd (" + socket_path_ + "): " + std::strerror(errno));
}

}  // namespace modbox
