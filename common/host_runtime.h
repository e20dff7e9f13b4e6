#pragma once
// Which OCI runtime works on this host's cgroup layout: the one rule the agent (its podman service's
// containers.conf) and `modbox doctor` share.

#include <string>

namespace modbox {

enum class CgroupLayout { v1, hybrid, v2 };

/// "v1" (pure cgroup v1), "hybrid" (v1 controllers with a v2 hierarchy beside them), "v2" (unified).
const char* to_string(CgroupLayout layout);

/// This host's layout, from the filesystem types mounted at /sys/fs/cgroup and /sys/fs/cgroup/unified.
CgroupLayout detect_cgroup_layout();

struct OciRuntimeChoice {
  std::string runtime;  // "crun" or "runc"
  std::string reason;   // why, for people: "cgroup v1 hybrid layout, which crun refuses"
};

/// crun refuses cgroup v1 hybrid mode ("cgroups in hybrid mode not supported") where runc works; runc
/// fails in pure cgroup v1 nested setups where crun works; on v2 crun is Podman's own choice.
OciRuntimeChoice choose_oci_runtime(CgroupLayout layout, bool has_crun, bool has_runc);

}  // namespace modbox
