#pragma once
// Tells systemd that modboxd is ready when a unit of Type=notify runs it (sd_notify's protocol: a
// datagram on $NOTIFY_SOCKET), so that `systemctl --user start modboxd` returns once the agent serves.

#include <string>

namespace modbox {

class ServiceNotifier {
 public:
  /// Takes $NOTIFY_SOCKET out of the environment, so that the agent's children (the Podman service,
  /// which would notify on its own) never see it. Without it every call does nothing.
  static ServiceNotifier take_from_environment();
  /// Sends `state` ("READY=1", "STOPPING=1", "STATUS=…"); a failure is logged, never fatal.
  void notify(const std::string& state) const;
  bool active() const { return !socket_path_.empty(); }

 private:
  std::string socket_path_;
};

}  // namespace modbox
