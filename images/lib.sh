# shellcheck shell=bash
# Shared by the scripts in images/ (sourced, not run).

images_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say() { echo "==> $*"; }
die() { echo "error: $*" >&2; exit 1; }

# Build with the same settings modboxd gives its podman service.
export CONTAINERS_CONF=$images_dir/containers.conf

# Without systemd-logind nothing creates /run/user/UID, and after `su`/`runuser` XDG_RUNTIME_DIR may be
# missing or still root's. Use the directory rootless podman itself falls back to, so a plain `podman` in a
# shell without XDG_RUNTIME_DIR sees the same containers (podman keeps its runtime state there).
if [[ $EUID -ne 0 ]] && ! [[ -d ${XDG_RUNTIME_DIR:-} && -O ${XDG_RUNTIME_DIR:-} && -w ${XDG_RUNTIME_DIR:-} ]]; then
  export XDG_RUNTIME_DIR=/tmp/podman-run-$EUID
  [[ -d $XDG_RUNTIME_DIR ]] || mkdir -m 0700 "$XDG_RUNTIME_DIR"
  [[ -O $XDG_RUNTIME_DIR ]] || die "$XDG_RUNTIME_DIR belongs to someone else"
fi

# Print the first OCI runtime that can run a container here. Which one works depends on the host (crun fails
# on cgroup v1/v2 hybrid layouts, runc fails in some nested setups), so try them on a throwaway rootfs
# holding only /true: no image needed, ~0.3 s. MODBOX_OCI_RUNTIME skips the probe.
pick_runtime() {
  if [[ -n ${MODBOX_OCI_RUNTIME:-} ]]; then echo "$MODBOX_OCI_RUNTIME"; return; fi
  local dir rt lib found=""
  dir=$(mktemp -d)
  cp /usr/bin/true "$dir/"
  for lib in $(ldd /usr/bin/true | grep -o '/[^ ]*'); do
    mkdir -p "$dir${lib%/*}" && cp "$lib" "$dir$lib"
  done
  for rt in crun runc; do
    if podman run --runtime "$rt" --rm --network none --rootfs "$dir" /true >/dev/null 2>&1; then
      found=$rt; break
    fi
  done
  rm -rf "$dir"
  [[ -n $found ]] && echo "$found"
}
