#include "cli/doctor.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace modbox {

namespace {
using nlohmann::json;

constexpr std::uint64_t mebibyte = 1ULL << 20;
constexpr std::uint64_t gibibyte = 1ULL << 30;
/// A sandbox-lite build and a few sandboxes fit; less and builds and container starts fail.
constexpr std::uint64_t storage_problem_below = 512 * mebibyte;
constexpr std::uint64_t storage_warning_below = 4 * gibibyte;
/// Records and logs are small (1 MiB of log per sandbox at most).
constexpr std::uint64_t state_problem_below = 32 * mebibyte;
constexpr std::uint64_t state_warning_below = 256 * mebibyte;
/// Enough for the root (0) to the overflow id (65534) of an image.
constexpr std::uint64_t subids_wanted = 65536;

std::string join(const std::vector<std::string>& items, const char* separator = ", ") {
  std::string text;
  for (const auto& item : items) text += (text.empty() ? "" : separator) + item;
  return text;
}

std::string string_at(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string prepare_host(const DoctorFacts& facts) {
  return facts.images_dir.empty() ? "images/prepare-host" : facts.images_dir + "/prepare-host";
}

std::string fix_user_setup(const DoctorFacts& facts) {
  return "sudo " + prepare_host(facts) + " --install --user " + facts.user;
}

DoctorCheck check_podman(const DoctorFacts& facts) {
  DoctorCheck check{.name = "podman"};
  if (facts.podman_path.empty()) {
    check.status = CheckStatus::problem;
    check.detail = "podman is not installed (not in PATH)";
    check.fix = fix_user_setup(facts);
    return check;
  }
  OciRuntimeChoice runtime = choose_oci_runtime(facts.cgroup_layout, facts.has_crun, facts.has_runc);
  if (facts.agent_status && !facts.agent_status->runtime.empty())
    runtime = {facts.agent_status->runtime, "the running agent's choice"};
  std::string runtime_text = "OCI runtime " + runtime.runtime + " (" + runtime.reason + ")";
  if (!facts.has_crun && !facts.has_runc) {
    check.status = CheckStatus::problem;
    check.detail = "neither crun nor runc is installed: Podman cannot run a container";
    check.fix = fix_user_setup(facts);
    return check;
  }
  if (!facts.podman) {
    if (!facts.podman_error.empty()) {
      check.status = CheckStatus::problem;
      check.detail = "`podman info` failed: " + facts.podman_error;
      check.fix = fix_user_setup(facts);
    } else {
      // Withheld: see the storage check.
      check.status = CheckStatus::warning;
      check.detail = (facts.podman_version_line.empty() ? std::string("podman") : facts.podman_version_line) + ", " +
                     runtime_text + "; not asked further until its storage is set up (see storage)";
    }
    return check;
  }
  const PodmanInfo& info = *facts.podman;
  check.detail = "Podman " + info.version + (info.rootless ? " (rootless), " : " (rootful), ") + runtime_text;
  int major = 0;
  std::sscanf(info.version.c_str(), "%d", &major);
  if (major < 4) {
    check.status = CheckStatus::warning;
    check.detail += "; modbox is made for Podman 4 (Debian 12's 4.3) and newer";
  }
  return check;
}

DoctorCheck check_cgroups(const DoctorFacts& facts) {
  DoctorCheck check{.name = "cgroups"};
  std::string layout = facts.cgroup_layout == CgroupLayout::v2       ? "cgroup v2"
                       : facts.cgroup_layout == CgroupLayout::hybrid ? "cgroup v1 (hybrid)"
                                                                     : "cgroup v1";
  bool rootless = facts.podman ? facts.podman->rootless : !facts.root;
  if (!rootless) {
    check.detail = layout + ", rootful: memory, cpu and pids limits are enforced";
    return check;
  }
  if (facts.cgroup_layout != CgroupLayout::v2) {
    check.status = CheckStatus::warning;
    check.detail = layout +
                   ": rootless Podman cannot enforce memory, cpu or pids limits here (sandboxes run without "
                   "them); a cgroup v2 host with delegated controllers can";
    return check;
  }
  if (!facts.podman) {
    check.status = CheckStatus::warning;
    check.detail = layout + ": which controllers are delegated is not known (Podman was not asked)";
    return check;
  }
  std::vector<std::string> available;
  std::vector<std::string> missing;
  for (const char* controller : {"memory", "cpu", "pids"}) {
    const auto& delegated = facts.podman->cgroup_controllers;
    (std::find(delegated.begin(), delegated.end(), controller) != delegated.end() ? available : missing)
        .push_back(controller);
  }
  if (missing.empty()) {
    check.detail = layout + ", controllers delegated to " + facts.user + ": memory, cpu and pids limits are enforced";
    return check;
  }
  check.status = CheckStatus::warning;
  check.detail = layout + ": limits enforced: " + (available.empty() ? "none" : join(available)) +
                 "; not delegated to " + facts.user + ": " + join(missing) +
                 " (those limits are ignored; Delegate= in a user@.service drop-in delegates them)";
  return check;
}

DoctorCheck check_subids(const DoctorFacts& facts) {
  DoctorCheck check{.name = "subordinate_ids"};
  if (facts.root) {
    check.detail = "not needed: running as root (rootful Podman)";
    return check;
  }
  auto describe = [&](const char* file, const std::optional<std::string>& text, std::optional<SubidRange>& range) {
    range = text ? find_subid_range(*text, facts.user, facts.uid) : std::nullopt;
    if (!range) return std::string(file) + ": none for " + facts.user;
    return std::string(file) + ": " + std::to_string(range->start) + "-" +
           std::to_string(range->start + range->count - 1) + " (" + std::to_string(range->count) + ")";
  };
  std::optional<SubidRange> uids;
  std::optional<SubidRange> gids;
  std::string detail =
      describe("/etc/subuid", facts.subuid_text, uids) + "; " + describe("/etc/subgid", facts.subgid_text, gids);
  check.detail = detail;
  if (!uids || !gids) {
    check.status = CheckStatus::problem;
    check.detail = "rootless Podman needs subordinate ids: " + detail;
    check.fix = fix_user_setup(facts);
  } else if (uids->count < subids_wanted || gids->count < subids_wanted) {
    check.status = CheckStatus::warning;
    check.detail = detail + "; fewer than 65536: images with files owned by higher ids fail to start";
  }
  return check;
}

DoctorCheck check_tun(const DoctorFacts& facts) {
  DoctorCheck check{.name = "tun"};
  if (facts.root) {
    check.detail = "/dev/net/tun: not needed rootful";
    return check;
  }
  if (!facts.tun_exists) {
    check.status = CheckStatus::problem;
    check.detail =
        "/dev/net/tun is missing: rootless networking (slirp4netns) needs it (sandboxes with "
        "--network none do not)";
    check.fix = "sudo modprobe tun";
  } else if (!facts.tun_usable) {
    check.status = CheckStatus::problem;
    check.detail = "/dev/net/tun is not readable and writable by " + facts.user +
                   ": rootless networking (slirp4netns) needs it (sandboxes with --network none do not)";
    check.fix = fix_user_setup(facts);
  } else {
    check.detail = "/dev/net/tun: readable and writable by " + facts.user;
  }
  return check;
}

DoctorCheck check_storage(const DoctorFacts& facts) {
  DoctorCheck check{.name = "storage"};
  if (!facts.storage_configured) {
    check.status = CheckStatus::problem;
    check.detail = "no Podman storage yet and no " + facts.storage_conf_path +
                   ": podman would create one with the slow vfs driver (not run, so it has not)";
    check.fix = fix_user_setup(facts);
    return check;
  }
  if (!facts.podman) {
    check.status = CheckStatus::warning;
    check.detail = "driver not known (podman info failed)";
    return check;
  }
  const PodmanInfo& info = *facts.podman;
  check.detail = "driver " + info.graph_driver + " at " + info.graph_root;
  if (info.graph_driver != "overlay") {
    check.status = CheckStatus::warning;
    check.detail += ": every layer is a full copy, so builds and sandbox starts are slow";
    check.fix = "put [storage] driver = \"overlay\" in " + facts.storage_conf_path +
                ", then podman system reset (which deletes all images and containers)";
  }
  return check;
}

std::string layer_name(const std::string& name) {
  if (name == "systemd_timer") return "systemd timers";
  if (name == "podman_timeout") return "Podman's timeout";
  if (name == "agent_reaper") return "the agent's reaper";
  return name;
}

DoctorCheck check_systemd(const DoctorFacts& facts) {
  DoctorCheck check{.name = "systemd"};
  std::vector<TtlLayer> layers;
  if (facts.agent_status && !facts.agent_status->ttl_layers.empty()) {
    layers = facts.agent_status->ttl_layers;
  } else {
    bool timers = facts.systemd_booted && facts.user_manager_bus && facts.systemd_run_installed;
    layers = {{"systemd_timer", timers, ""},
              {"podman_timeout", true, ""},
              {"agent_reaper", facts.agent == AgentState::answering || facts.agent == AgentState::busy, ""}};
  }
  std::vector<std::string> active;
  std::vector<std::string> inactive;
  bool timers_active = false;
  for (const auto& layer : layers) {
    (layer.active ? active : inactive).push_back(layer_name(layer.name));
    if (layer.name == "systemd_timer") timers_active = layer.active;
  }
  std::string manager = !facts.systemd_booted    ? "no systemd as PID 1, so no user manager"
                        : facts.user_manager_bus ? "a systemd user manager runs for " + facts.user
                                                 : "no systemd user manager for " + facts.user + " (not logged in)";
  check.detail = manager + "; TTL layers active: " + (active.empty() ? "none" : join(active)) +
                 (inactive.empty() ? "" : "; inactive: " + join(inactive));
  if (facts.agent == AgentState::not_running)
    check.detail += " (the reaper runs with modboxd, which any command starts)";
  if (!timers_active) {
    check.status = CheckStatus::warning;
    if (facts.systemd_booted && !facts.user_manager_bus) check.fix = "loginctl enable-linger " + facts.user;
  }
  return check;
}

DoctorCheck check_disk(const DoctorFacts& facts) {
  DoctorCheck check{.name = "disk"};
  if (!facts.state_dir_problem.empty()) {
    check.status = CheckStatus::problem;
    check.detail =
        "the agent's state directory " + facts.state_dir_space.path + " cannot be used: " + facts.state_dir_problem;
    check.fix =
        facts.state_dir_from_environment ? "unset MODBOX_STATE_DIR" : "mkdir -p -m 0700 " + facts.state_dir_space.path;
    return check;
  }
  std::vector<std::string> parts;
  auto judge = [&](const DiskSpace& space, const char* what, std::uint64_t problem_below, std::uint64_t warning_below) {
    if (space.path.empty()) return;
    if (!space.available_bytes) {
      parts.push_back(std::string(what) + " " + space.path + ": free space unknown (" + space.error + ")");
      if (check.status == CheckStatus::ok) check.status = CheckStatus::warning;
      return;
    }
    parts.push_back(std::string(what) + " " + space.path + ": " + describe_bytes(*space.available_bytes) + " free");
    if (*space.available_bytes < problem_below) {
      check.status = CheckStatus::problem;
      check.fix = "podman system prune";
    } else if (*space.available_bytes < warning_below && check.status == CheckStatus::ok) {
      check.status = CheckStatus::warning;
    }
  };
  judge(facts.graph_root_space, "Podman storage", storage_problem_below, storage_warning_below);
  judge(facts.state_dir_space, "state", state_problem_below, state_warning_below);
  check.detail = join(parts, "; ");
  return check;
}

DoctorCheck check_images(const DoctorFacts& facts) {
  DoctorCheck check{.name = "images"};
  if (!facts.built_images) {
    check.status = CheckStatus::warning;
    check.detail = "not checked: Podman is not usable";
    return check;
  }
  std::vector<std::string> built;
  std::vector<std::string> missing;
  for (const char* name : default_image_names) {
    std::string reference = std::string("localhost/modbox/") + name + ":latest";
    const auto& names = *facts.built_images;
    (std::find(names.begin(), names.end(), reference) != names.end() ? built : missing).push_back(name);
  }
  check.detail = "built: " + (built.empty() ? std::string("none") : join(built));
  if (!missing.empty()) check.detail += "; not built: " + join(missing) + " (modbox images build NAME)";
  bool default_missing = std::find(missing.begin(), missing.end(), default_image_names[0]) != missing.end();
  if (default_missing && facts.images_dir.empty()) {
    check.status = CheckStatus::problem;
    check.detail += "; the default image " + std::string(default_image_names[0]) +
                    " is missing and this install has no images/ to build it from";
    check.fix = "export MODBOX_IMAGES_DIR=/path/to/modbox/images";
  } else if (default_missing) {
    check.status = CheckStatus::warning;
    check.detail +=
        "; the first provision builds the default image " + std::string(default_image_names[0]) + " (a minute)";
    check.fix = "modbox images build " + std::string(default_image_names[0]);
  }
  return check;
}

DoctorCheck check_agent(const DoctorFacts& facts) {
  DoctorCheck check{.name = "agent"};
  std::string where = facts.api_url ? " at " + *facts.api_url + " (from " + facts.api_url_origin + ")" : "";
  switch (facts.agent) {
    case AgentState::answering: {
      const AgentStatus& status = *facts.agent_status;
      check.detail = "modboxd " + status.version + where + " running (pid " + std::to_string(status.pid) + "), " +
                     std::to_string(status.live_sandboxes) + " live sandboxes";
      if (!status.podman_ready) {
        check.status = CheckStatus::problem;
        check.detail += "; its Podman service is NOT ready: " + status.podman_detail;
        check.fix = facts.api_url ? "" : "modbox agent restart";
      } else {
        check.detail += ", Podman ready";
      }
      break;
    }
    case AgentState::busy:
      check.status = CheckStatus::warning;
      check.detail = "modboxd is running (it holds its lock) but did not answer in time: busy, or still starting";
      check.fix = "modbox agent logs --tail 50";
      break;
    case AgentState::not_running:
      check.status = CheckStatus::warning;
      check.detail = "modboxd is not running; any command that needs it starts it (log: " + facts.agent_log + ")";
      check.fix = "modbox agent start";
      break;
    case AgentState::unreachable:
      check.status = CheckStatus::problem;
      check.detail = "modboxd" + where + " does not answer: " + facts.agent_error;
      check.fix = facts.api_url_origin.starts_with("env ") ? "unset MODBOX_API_URL MODBOX_API_TOKEN"
                                                           : "modbox config unset api_url";
      break;
  }
  return check;
}

}  // namespace

Result<PodmanInfo> parse_podman_info(std::string_view json_text) {
  json parsed = json::parse(json_text, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object())
    return fail(ErrorKind::bad_request, "podman info did not print a JSON object");
  PodmanInfo info;
  const json host = parsed.value("host", json::object());
  const json store = parsed.value("store", json::object());
  const json version = parsed.value("version", json::object());
  if (!host.is_object() || !store.is_object() || !version.is_object())
    return fail(ErrorKind::bad_request, "podman info's JSON lacks host, store or version");
  info.version = string_at(version, "Version");
  info.cgroup_version = string_at(host, "cgroupVersion");
  if (auto controllers = host.find("cgroupControllers"); controllers != host.end() && controllers->is_array())
    for (const auto& controller : *controllers)
      if (controller.is_string()) info.cgroup_controllers.push_back(controller.get<std::string>());
  if (auto runtime = host.find("ociRuntime"); runtime != host.end() && runtime->is_object())
    info.oci_runtime = string_at(*runtime, "name");
  if (auto security = host.find("security"); security != host.end() && security->is_object()) {
    auto rootless = security->find("rootless");
    if (rootless != security->end() && rootless->is_boolean()) info.rootless = rootless->get<bool>();
  }
  info.graph_driver = string_at(store, "graphDriverName");
  info.graph_root = string_at(store, "graphRoot");
  if (info.version.empty() || info.graph_driver.empty())
    return fail(ErrorKind::bad_request, "podman info's JSON lacks version.Version or store.graphDriverName");
  return info;
}

Result<std::vector<std::string>> parse_podman_image_names(std::string_view json_text) {
  json parsed = json::parse(json_text, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_array())
    return fail(ErrorKind::bad_request, "podman images did not print a JSON array");
  std::vector<std::string> names;
  for (const auto& image : parsed) {
    if (!image.is_object()) continue;
    auto listed = image.find("Names");
    if (listed == image.end() || !listed->is_array()) continue;
    for (const auto& name : *listed)
      if (name.is_string()) names.push_back(name.get<std::string>());
  }
  return names;
}

std::optional<SubidRange> find_subid_range(std::string_view file_text, const std::string& user, uid_t uid) {
  std::optional<SubidRange> best;
  std::string uid_text = std::to_string(uid);
  std::size_t start = 0;
  while (start < file_text.size()) {
    std::size_t end = file_text.find('\n', start);
    if (end == std::string_view::npos) end = file_text.size();
    std::string line(file_text.substr(start, end - start));
    start = end + 1;
    auto first = line.find(':');
    auto second = first == std::string::npos ? std::string::npos : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    std::string owner = line.substr(0, first);
    if (owner != user && owner != uid_text) continue;
    try {
      std::size_t used = 0;
      std::string start_text = line.substr(first + 1, second - first - 1);
      std::string count_text = line.substr(second + 1);
      SubidRange range{std::stoull(start_text, &used), 0};
      if (used != start_text.size()) continue;
      range.count = std::stoull(count_text, &used);
      if (used != count_text.size() || range.count == 0) continue;
      if (!best || range.count > best->count) best = range;
    } catch (const std::exception&) {
      continue;  // a malformed line is not a range: newuidmap skips it too
    }
  }
  return best;
}

const char* to_string(CheckStatus status) {
  switch (status) {
    case CheckStatus::ok:
      return "ok";
    case CheckStatus::warning:
      return "warning";
    case CheckStatus::problem:
      return "problem";
  }
  return "problem";
}

std::vector<DoctorCheck> diagnose(const DoctorFacts& facts) {
  return {check_podman(facts),  check_cgroups(facts), check_subids(facts), check_tun(facts),  check_storage(facts),
          check_systemd(facts), check_disk(facts),    check_images(facts), check_agent(facts)};
}

int doctor_exit_status(const std::vector<DoctorCheck>& checks) {
  return std::any_of(checks.begin(), checks.end(),
                     [](const DoctorCheck& check) { return check.status == CheckStatus::problem; })
             ? 1
             : 0;
}

std::string doctor_checks_to_json(const std::vector<DoctorCheck>& checks) {
  json list = json::array();
  int problems = 0;
  int warnings = 0;
  for (const auto& check : checks) {
    problems += check.status == CheckStatus::problem;
    warnings += check.status == CheckStatus::warning;
    list.push_back({{"name", check.name},
                    {"status", to_string(check.status)},
                    {"detail", check.detail},
                    {"fix", check.fix.empty() ? json(nullptr) : json(check.fix)}});
  }
  return json{{"ok", problems == 0}, {"problems", problems}, {"warnings", warnings}, {"checks", list}}.dump();
}

std::string describe_bytes(std::uint64_t bytes) {
  char text[32];
  if (bytes >= gibibyte)
    std::snprintf(text, sizeof text, "%.1f GiB", static_cast<double>(bytes) / static_cast<double>(gibibyte));
  else
    std::snprintf(text, sizeof text, "%llu MiB", static_cast<unsigned long long>(bytes / mebibyte));
  return text;
}

}  // namespace modbox
