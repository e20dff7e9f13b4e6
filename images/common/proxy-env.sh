# shellcheck shell=bash
# Proxy settings for every program a sandbox's shell starts (seed 001's "Proxy support"). Installed as
# /etc/modbox/proxy-env.sh by the desktop (sandbox) and code-exec images, and sourced by every
# non-interactive bash (the image sets BASH_ENV to it: exec commands, background processes and scripts
# all run through `bash -c`) and every interactive one (/etc/bash.bashrc: the web terminal).
#
# Why here and not in a file the entrypoint writes: a sandbox's helper answers as soon as it started the
# entrypoint, so the first exec could run before such a file existed. This file is in the image, and it
# reads the variables when each shell starts, so the first command sees the same settings as the last,
# also when a command sets the variables itself and starts another bash.
#
# HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY may be given in either case, but the tools each read
# only some spellings: curl and git ignore HTTP_PROXY, apt reads only http_proxy, https_proxy and
# no_proxy. So both spellings are exported with one value, the lower-case one winning when both are set
# (as curl, git and Python do). socks5:// becomes socks5h://: the proxy resolves host names, as Chromium
# does with socks5://. apt accepts only socks5h://, and pip, git, curl and npm would otherwise look names
# up in the sandbox, which fails where only the proxy reaches a name server. pip's SOCKS support is
# python3-socks, in both images.
#
# Sourced by every bash, so it starts no process. Names starting __modbox_ are removed after use.
__modbox_proxy_env() {
  local lower upper value
  for lower in http_proxy https_proxy ftp_proxy all_proxy no_proxy; do
    upper=${lower^^}
    value=${!lower:-${!upper:-}}
    [[ -n $value ]] || continue
    [[ $lower == no_proxy || $value != socks5://* ]] || value=socks5h://${value#socks5://}
    export "$lower=$value" "$upper=$value"
  done
}
__modbox_proxy_env
unset -f __modbox_proxy_env
