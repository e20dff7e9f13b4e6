#pragma once
// `modbox doctor`: what this host needs for rootless sandboxes, checked in a fixed order, each with
// the one command that fixes a problem. Pure: the facts are gathered elsewhere (doctor_command.cpp)
// and handed in, so every verdict can be tested with made-up hosts.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/host_runtime.h"
#include "common/image_models.h"
#include "common/models.h"
#include "common/result.h"

namespace modbox {

/// What `podman info --format json` says that doctor uses.
struct PodmanInfo {
  std::string version;                          // "4.3.1"
  std::string oci_runtime;                      // Podman's own default: "crun"
  std::string cgroup_version;                   // "v1" or "v2"
  std::vector<std::string> cgroup_controllers;  // rootless: those delegated to the user
  bool rootless = true;
  std::string graph_driver;  // "overlay", "vfs"
  std::string graph_root;    // where images and containers are stored
};

Result<PodmanInfo> parse_podman_info(std::string_view json_text);

/// The names (`localhost/modbox/sandbox-lite:latest`) of the images `podman images --format json` lists.
Result<std::vector<std::string>> parse_podman_image_names(std::string_view json_text);

struct SubidRange {
  std::uint64_t start = 0;
  std::uint64_t count = 0;
};

/// The largest range of /etc/subuid or /etc/subgid (`name:start:count` lines; the name may be the uid)
/// given to `user`.
std::optional<SubidRange> find_subid_range(std::string_view file_text, const std::string& user, uid_t uid);

/// Free space at a path: bytes available to this user, or why it could not be told.
struct DiskSpace {
  std::string path;
  std::optional<std::uint64_t> available_bytes;
  std::string error;
};

enum class AgentState {
  answering,    // GET /agent/status answered (`status` holds it)
  busy,         // its lock is held but it did not answer in time
  not_running,  // nobody holds its lock
  unreachable,  // reached at a URL (api_url) that does not answer
};

/// Everything doctor looks at, gathered from the host.
struct DoctorFacts {
  std::string user;
  uid_t uid = 0;
  bool root = false;
  /// Where images/prepare-host and images/build are; empty when this install has no images/.
  std::string images_dir;

  // Podman: not installed (`podman_path` empty); or `podman info` withheld (it would create a storage
  // with the slow vfs driver) or failed (`podman_error`); or its answer.
  std::string podman_path;
  std::string podman_version_line;  // `podman --version`, when info was not asked
  std::optional<PodmanInfo> podman;
  std::string podman_error;

  CgroupLayout cgroup_layout = CgroupLayout::v2;
  bool has_crun = false;
  bool has_runc = false;

  std::optional<std::string> subuid_text;  // nullopt: unreadable or missing
  std::optional<std::string> subgid_text;

  bool tun_exists = false;
  bool tun_usable = false;

  /// ~/.config/containers/storage.conf exists, or a Podman storage does: running podman is safe.
  bool storage_configured = false;
  std::string storage_conf_path;

  bool systemd_booted = false;    // /run/systemd/system
  bool user_manager_bus = false;  // /run/user/UID/bus (or systemd/private)
  bool systemd_run_installed = false;

  DiskSpace graph_root_space;
  DiskSpace state_dir_space;
  /// Why the agent's state directory cannot be used (created, or written); empty when it can.
  std::string state_dir_problem;
  bool state_dir_from_environment = false;  // MODBOX_STATE_DIR set it

  std::optional<std::vector<std::string>> built_images;  // nullopt: not listed (podman unusable)

  AgentState agent = AgentState::not_running;
  std::optional<AgentStatus> agent_status;
  std::string agent_error;
  std::optional<std::string> api_url;  // the agent is reached at this URL
  std::string api_url_origin;
  std::string agent_log;
};

enum class CheckStatus { ok, warning, problem };
const char* to_string(CheckStatus status);

struct DoctorCheck {
  std::string name;  // podman, cgroups, subordinate_ids, tun, storage, systemd, disk, images, agent
  CheckStatus status = CheckStatus::ok;
  std::string detail;
  std::string fix;  // the one command that fixes it; may be empty for a warning
};

/// The checks, in order. A problem blocks provisioning; a warning does not.
std::vector<DoctorCheck> diagnose(const DoctorFacts& facts);

/// 1 when a check is a problem, else 0.
int doctor_exit_status(const std::vector<DoctorCheck>& checks);

/// `{"ok": bool, "problems": N, "warnings": N, "checks": [{"name", "status", "detail", "fix"}...]}`.
std::string doctor_checks_to_json(const std::vector<DoctorCheck>& checks);

/// "12.3 GiB", "512 MiB".
std::string describe_bytes(std::uint64_t bytes);

}  // namespace modbox
