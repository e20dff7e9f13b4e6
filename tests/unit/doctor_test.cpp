// modbox doctor's verdicts on made-up hosts: parsing Podman's answers and /etc/subuid, and each
// check's status and fix.

#include "cli/doctor.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace modbox;

namespace {

const char* podman_info_json = R"({
  "host": {"cgroupVersion": "v2", "cgroupControllers": ["cpu", "pids"],
           "ociRuntime": {"name": "crun", "path": "/usr/bin/crun"},
           "security": {"rootless": true}},
  "store": {"graphDriverName": "overlay", "graphRoot": "/home/ada/.local/share/containers/storage"},
  "version": {"Version": "4.3.1", "APIVersion": "4.3.1"}
})";

/// A host where everything is in order: cgroup v2 with every controller, systemd, the images built.
DoctorFacts healthy_host() {
  DoctorFacts facts;
  facts.user = "ada";
  facts.uid = 1000;
  facts.images_dir = "/src/modbox/images";
  facts.podman_path = "/usr/bin/podman";
  facts.podman = *parse_podman_info(podman_info_json);
  facts.podman->cgroup_controllers = {"cpuset", "cpu", "io", "memory", "pids"};
  facts.cgroup_layout = CgroupLayout::v2;
  facts.has_crun = true;
  facts.subuid_text = "ada:100000:65536\n";
  facts.subgid_text = "ada:100000:65536\n";
  facts.tun_exists = facts.tun_usable = true;
  facts.storage_configured = true;
  facts.storage_conf_path = "/home/ada/.config/containers/storage.conf";
  facts.systemd_booted = facts.user_manager_bus = facts.systemd_run_installed = true;
  facts.graph_root_space = {"/home/ada/.local/share/containers/storage", 50ULL << 30, ""};
  facts.state_dir_space = {"/home/ada/.local/share/modbox", 50ULL << 30, ""};
  facts.built_images = std::vector<std::string>{"localhost/modbox/sandbox-lite:latest"};
  AgentStatus status;
  status.version = "0.1.0";
  status.pid = 42;
  status.podman_ready = true;
  status.runtime = "crun";
  facts.agent = AgentState::answering;
  facts.agent_status = status;
  return facts;
}

const DoctorCheck& named(const std::vector<DoctorCheck>& checks, const std::string& name) {
  for (const auto& check : checks)
    if (check.name == name) return check;
  FAIL("no check " << name);
  return checks.front();
}

}  // namespace

TEST_CASE("podman info's JSON gives the version, runtime, cgroups and storage", "[doctor]") {
  auto info = parse_podman_info(podman_info_json);
  REQUIRE(info);
  CHECK(info->version == "4.3.1");
  CHECK(info->oci_runtime == "crun");
  CHECK(info->cgroup_version == "v2");
  CHECK(info->cgroup_controllers == std::vector<std::string>{"cpu", "pids"});
  CHECK(info->rootless);
  CHECK(info->graph_driver == "overlay");
  CHECK(info->graph_root == "/home/ada/.local/share/containers/storage");
  CHECK_FALSE(parse_podman_info("Error: something"));
  CHECK_FALSE(parse_podman_info(R"({"host": {}, "store": {}, "version": {}})"));
}

TEST_CASE("podman images' JSON gives every name of every image", "[doctor]") {
  auto names = parse_podman_image_names(
      R"([{"Id": "1", "Names": ["localhost/modbox/sandbox-lite:latest"]}, {"Id": "2", "Names": null},
          {"Id": "3", "Names": ["localhost/a:1", "localhost/b:2"]}])");
  REQUIRE(names);
  CHECK(*names == std::vector<std::string>{"localhost/modbox/sandbox-lite:latest", "localhost/a:1", "localhost/b:2"});
  CHECK_FALSE(parse_podman_image_names("{}"));
}

TEST_CASE("subordinate id lines are found by name or uid, the largest range winning", "[doctor]") {
  const char* text = "bob:100000:65536\n1000:200000:1000\nada:300000:65536\nbroken\nada:x:1\n";
  auto by_name = find_subid_range(text, "ada", 1000);
  REQUIRE(by_name);
  CHECK(by_name->start == 300000);
  CHECK(by_name->count == 65536);
  auto by_uid = find_subid_range("1000:200000:1000\n", "ada", 1000);
  REQUIRE(by_uid);
  CHECK(by_uid->count == 1000);
  CHECK_FALSE(find_subid_range(text, "eve", 1001));
  CHECK_FALSE(find_subid_range("", "ada", 1000));
}

TEST_CASE("a healthy host passes every check, in the documented order", "[doctor]") {
  auto checks = diagnose(healthy_host());
  std::vector<std::string> names;
  for (const auto& check : checks) {
    INFO(check.name << ": " << check.detail);
    CHECK(check.status == CheckStatus::ok);
    names.push_back(check.name);
  }
  CHECK(names == std::vector<std::string>{"podman", "cgroups", "subordinate_ids", "tun", "storage", "systemd", "disk",
                                          "images", "agent"});
  CHECK(doctor_exit_status(checks) == 0);
  CHECK(named(checks, "podman").detail.find("Podman 4.3.1 (rootless), OCI runtime crun") != std::string::npos);
  CHECK(named(checks, "systemd").detail.find("systemd timers, Podman's timeout, the agent's reaper") !=
        std::string::npos);
}

TEST_CASE("each problem blocks provisioning and names the command that fixes it", "[doctor]") {
  DoctorFacts facts = healthy_host();
  SECTION("no podman") {
    facts.podman_path.clear();
    facts.podman.reset();
    CHECK(named(diagnose(facts), "podman").fix == "sudo /src/modbox/images/prepare-host --install --user ada");
  }
  SECTION("no subordinate ids") {
    facts.subgid_text = "bob:100000:65536\n";
    auto check = named(diagnose(facts), "subordinate_ids");
    CHECK(check.status == CheckStatus::problem);
    CHECK(check.detail.find("/etc/subgid: none for ada") != std::string::npos);
    CHECK(check.fix == "sudo /src/modbox/images/prepare-host --install --user ada");
  }
  SECTION("/dev/net/tun") {
    facts.tun_usable = false;
    CHECK(named(diagnose(facts), "tun").status == CheckStatus::problem);
    facts.tun_exists = false;
    CHECK(named(diagnose(facts), "tun").fix == "sudo modprobe tun");
  }
  SECTION("a storage podman would create with vfs") {
    facts.storage_configured = false;
    facts.podman.reset();
    auto checks = diagnose(facts);
    CHECK(named(checks, "storage").status == CheckStatus::problem);
    CHECK(named(checks, "podman").status == CheckStatus::warning);
  }
  SECTION("a state directory that cannot be made") {
    facts.state_dir_problem = "it cannot be created: /etc/passwd is not a directory";
    facts.state_dir_from_environment = true;
    CHECK(named(diagnose(facts), "disk").fix == "unset MODBOX_STATE_DIR");
  }
  SECTION("a full disk") {
    facts.graph_root_space.available_bytes = 100ULL << 20;
    CHECK(named(diagnose(facts), "disk").status == CheckStatus::problem);
  }
  SECTION("an agent whose Podman is down") {
    facts.agent_status->podman_ready = false;
    CHECK(named(diagnose(facts), "agent").fix == "modbox agent restart");
  }
  SECTION("an agent URL that does not answer") {
    facts.agent = AgentState::unreachable;
    facts.agent_status.reset();
    facts.api_url = "http://127.0.0.1:1";
    facts.api_url_origin = "file /home/ada/.config/modbox/config.json";
    CHECK(named(diagnose(facts), "agent").fix == "modbox config unset api_url");
  }
  SECTION("no default image, and nothing to build it from") {
    facts.built_images = std::vector<std::string>{};
    facts.images_dir.clear();
    CHECK(named(diagnose(facts), "images").status == CheckStatus::problem);
  }
  CHECK(doctor_exit_status(diagnose(facts)) == 1);
}

TEST_CASE("warnings leave provisioning possible", "[doctor]") {
  DoctorFacts facts = healthy_host();
  SECTION("cgroup v1 rootless: no limits") {
    facts.cgroup_layout = CgroupLayout::hybrid;
    CHECK(named(diagnose(facts), "cgroups").detail.find("cannot enforce") != std::string::npos);
  }
  SECTION("cgroup v2 without the memory controller delegated") {
    facts.podman->cgroup_controllers = {"cpu", "pids"};
    CHECK(named(diagnose(facts), "cgroups").detail.find("not delegated to ada: memory") != std::string::npos);
  }
  SECTION("no user manager: linger") {
    facts.user_manager_bus = false;
    facts.agent_status->ttl_layers = {{"systemd_timer", false, ""}, {"podman_timeout", true, ""}};
    CHECK(named(diagnose(facts), "systemd").fix == "loginctl enable-linger ada");
  }
  SECTION("vfs") {
    facts.podman->graph_driver = "vfs";
    CHECK(named(diagnose(facts), "storage").status == CheckStatus::warning);
  }
  SECTION("sandbox-lite not built yet") {
    facts.built_images = std::vector<std::string>{};
    CHECK(named(diagnose(facts), "images").fix == "modbox images build sandbox-lite");
  }
  SECTION("the agent not running") {
    facts.agent = AgentState::not_running;
    facts.agent_status.reset();
    CHECK(named(diagnose(facts), "agent").fix == "modbox agent start");
  }
  auto checks = diagnose(facts);
  CHECK(doctor_exit_status(checks) == 0);
  auto parsed = nlohmann::json::parse(doctor_checks_to_json(checks));
  CHECK(parsed["ok"] == true);
  CHECK(parsed["warnings"] == 1);
  CHECK(parsed["checks"].size() == 9);
}
