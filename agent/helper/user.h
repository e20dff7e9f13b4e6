#pragma once
// The image's USER, which the helper runs the entrypoint and every command as. The container itself
// starts as root so that the helper can create its socket in the host directory (owned by the host
// user, which is root in the container); the helper resolves the user inside the container and
// drops to it in each child it starts. Resolution follows runc's (what Podman and Docker use), from
// the container's /etc/passwd and /etc/group read as files: the helper is static, without NSS.

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace modbox::helper {

struct SandboxUser {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary: the groups that list the user by name
  std::string name;           // empty for a numeric uid that /etc/passwd does not know
  std::string home;           // "/" for a numeric uid that /etc/passwd does not know
};

/// Resolves a Docker USER spec (`name`, `uid`, `name:group`, `uid:gid`, or a mix) against
/// <root>/etc/passwd and <root>/etc/group. A name must be in passwd (a group name in group); a
/// number need not be. With an explicit group there are no supplementary groups, as in Docker.
Result<SandboxUser> resolve_user(std::string_view spec, const std::filesystem::path& root = "/");

/// In a child process only: drops to `user` (setgroups, setgid, setuid) and sets HOME/USER/LOGNAME.
/// HOME becomes the user's home when it is unset or /root (what Podman sets for root), so a HOME
/// that the image or the sandbox's env_vars chose is kept.
Result<void> become_user(const SandboxUser& user);

/// In a child process, before become_user: makes `user` the owner of its stdio (all but /dev/null),
/// so that the user can reopen them as /dev/stdout and /dev/stderr, as runc does.
void give_stdio_to(const SandboxUser& user);

}  // namespace modbox::helper
