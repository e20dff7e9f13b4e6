#include "common/host_runtime.h"

#include <linux/magic.h>
#include <sys/statfs.h>

namespace modbox {

namespace {
bool is_cgroup2_mount(const char* path) {
  struct statfs info {};
  return ::statfs(path, &info) == 0 && info.f_type == CGROUP2_SUPER_MAGIC;
}
}  // namespace

const char* to_string(CgroupLayout layout) {
  switch (layout) {
    case CgroupLayout::v1:
      return "v1";
    case CgroupLayout::hybrid:
      return "hybrid";
    case CgroupLayout::v2:
      return "v2";
  }
  return "v1";
}

CgroupLayout detect_cgroup_layout() {
  if (is_cgroup2_mount("/sys/fs/cgroup")) return CgroupLayout::v2;
  if (is_cgroup2_mount("/sys/fs/cgroup/unified")) return CgroupLayout::hybrid;
  return CgroupLayout::v1;
}

OciRuntimeChoice choose_oci_runtime(CgroupLayout layout, bool has_crun, bool has_runc) {
  switch (layout) {
    case CgroupLayout::v2:
      return {has_crun ? "crun" : "runc", "cgroup v2 (unified)"};
    case CgroupLayout::hybrid:
      return {has_runc ? "runc" : "crun", "cgroup v1 hybrid layout, which crun refuses"};
    case CgroupLayout::v1:
      break;
  }
  return {has_crun ? "crun" : "runc", "pure cgroup v1"};
}

}  // namespace modbox
