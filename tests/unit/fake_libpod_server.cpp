#include "tests/unit/fake_libpod_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <mutex>
#include <set>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/unit/test_support.h"

namespace modbox::testing {

using nlohmann::json;

namespace {
constexpr const char* api = "/v4.0.0/libpod";

void podman_error(httplib::Response& response, int status, const std::string& cause, const std::string& message) {
  response.status = status;
  response.set_content(json{{"cause", cause}, {"message", message}, {"response", status}}.dump(), "application/json");
}
}  // namespace

struct FakeLibpodServer::State {
  TempDir dir;
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> finished = false;

  mutable std::mutex mutex;
  std::vector<RecordedRequest> requests;
  std::set<std::string> images;
  std::map<std::string, std::string> image_configs;  // reference → the "Config" object of its inspection
  std::map<std::string, ContainerSummary> containers;
  int ping_status = 200;
  std::optional<std::pair<int, json>> create_failure;
  int remove_failure = 0;
  int next_id = 1;
  std::vector<std::string> build_lines;  // the JSON lines /build answers; empty: a small successful build

  void record(const httplib::Request& request) {
    RecordedRequest recorded{request.method, request.path, {}, {}, request.get_header_value("Content-Type"),
                             request.body};
    for (const auto& [name, value] : request.params) {
      recorded.params[name] = value;
      recorded.all_params.emplace(name, value);
    }
    for (std::size_t i = 0; i < request.get_header_value_count("Host"); ++i)
      recorded.host_headers.push_back(request.get_header_value("Host", i));
    std::lock_guard lock(mutex);
    requests.push_back(std::move(recorded));
  }

  /// Wraps a route handler so that the request, body included, is recorded first.
  httplib::Server::Handler recorded(httplib::Server::Handler handler) {
    return [this, handler = std::move(handler)](const httplib::Request& request, httplib::Response& response) {
      record(request);
      handler(request, response);
    };
  }

  void add_routes();
  void add_container_routes();
};

void FakeLibpodServer::State::add_routes() {
  server.Get("/_ping", recorded([this](const httplib::Request&, httplib::Response& response) {
    std::lock_guard lock(mutex);
    if (ping_status == 200) response.set_content("OK", "text/plain");
    else podman_error(response, ping_status, "ping", "service is shutting down");
  }));
  server.Get(std::string(api) + "/images/(.+)/exists", recorded([this](const httplib::Request& request, httplib::Response& response) {
    std::lock_guard lock(mutex);
    if (images.contains(request.matches[1].str())) response.status = 204;
    else podman_error(response, 404, "failed to find image", std::string(request.matches[1].str()) + ": image not known");
  }));
  server.Get(std::string(api) + "/images/(.+)/json", recorded([this](const httplib::Request& request, httplib::Response& response) {
    std::lock_guard lock(mutex);
    std::string reference = request.matches[1].str();
    if (!images.contains(reference)) return podman_error(response, 404, "failed to find image", reference + ": image not known");
    auto config = image_configs.find(reference);
    json body = {{"Id", "5eed"}, {"RepoTags", {reference}},
                 {"Config", config == image_configs.end() ? json::object() : json::parse(config->second)}};
    response.set_content(body.dump(), "application/json");
  }));
  // Commit answers as Podman 4 does: the copy's progress as plain lines, then the new image's Id.
  server.Post(std::string(api) + "/commit",
              recorded([this](const httplib::Request& request, httplib::Response& response) {
                std::lock_guard lock(mutex);
                std::string container = request.get_param_value("container");
                if (!containers.contains(container))
                  return podman_error(response, 404, "no such container",
                                      "no container with name or ID \"" + container + "\" found");
                images.insert(request.get_param_value("repo") + ":" + request.get_param_value("tag"));
                response.set_content(
                    "Getting image source signatures\nCopying blob sha256:ab12\nWriting manifest to image "
                    "destination\nStoring signatures\n{\"Id\":\"5eed0f\"}\n",
                    "application/json");
              }));
  // Build answers as Podman 4 does: 200 and JSON lines as the build goes, the image's id last (or
  // an "error" line).
  server.Post(
      std::string(api) + "/build", recorded([this](const httplib::Request& request, httplib::Response& response) {
        std::lock_guard lock(mutex);
        std::string body;
        if (build_lines.empty()) {
          images.insert(request.get_param_value("t"));
          std::string reference = request.get_param_value("t");
          for (const std::string& line :
               {std::string("STEP 1/2: FROM localhost/base\n"), std::string("STEP 2/2: RUN make\n"),
                std::string("compiled\n"), "COMMIT " + reference + "\n", std::string("3f9a0c1d2e3f4a5b6c7d8e9f\n")})
            body += json{{"stream", line}}.dump() + "\n";
        } else {
          for (const auto& line : build_lines) body += line + "\n";
        }
        response.set_content(body, "application/json");
      }));
  server.Delete(std::string(api) + "/images/(.+)",
                recorded([this](const httplib::Request& request, httplib::Response& response) {
                  std::lock_guard lock(mutex);
                  if (images.erase(request.matches[1].str()) == 0)
                    return podman_error(response, 404, "failed to find image",
                                        std::string(request.matches[1].str()) + ": image not known");
                  response.set_content(R"({"Deleted": ["5eed0f"], "Untagged": [], "Errors": [], "ExitCode": 0})",
                                       "application/json");
                }));
  add_container_routes();
}

void FakeLibpodServer::State::add_container_routes() {
  server.Post(std::string(api) + "/containers/create", recorded([this](const httplib::Request& request, httplib::Response& response) {
    std::lock_guard lock(mutex);
    if (create_failure) {
      response.status = create_failure->first;
      response.set_content(create_failure->second.dump(), "application/json");
      return;
    }
    json body = json::parse(request.body, nullptr, false);
    std::string id = "c0ffee" + std::to_string(next_id++);
    ContainerSummary summary{id, body.value("name", ""), "created", {}};
    if (body.contains("labels")) summary.labels = body["labels"].get<std::map<std::string, std::string>>();
    containers[id] = summary;
    response.status = 201;
    response.set_content(json{{"Id", id}, {"Warnings", json::array()}}.dump(), "application/json");
  }));
  server.Post(std::string(api) + "/containers/([^/]+)/start", recorded([this](const httplib::Request& request, httplib::Response& response) {
    std::lock_guard lock(mutex);
    auto it = containers.find(request.matches[1].str());
    if (it == containers.end())
      return podman_error(response, 404, "no such container",
                          "no container with name or ID \"" + std::string(request.matches[1].str()) + "\" found: no such container");
    it->second.state = "running";
    response.status = 204;
  }));
  server.Delete(std::string(api) + "/containers/([^/]+)", recorded([this](const httplib::Request& request, httplib::Response& response) {
    std::lock_guard lock(mutex);
    if (remove_failure != 0) return podman_error(response, remove_failure, "runtime", "cannot remove: device busy");
    if (containers.erase(request.matches[1].str()) == 0)
      return podman_error(response, 404, "no such container", "no container with ID found");
    response.set_content(json::array({{{"Id", std::string(request.matches[1].str())}, {"Err", nullptr}}}).dump(), "application/json");
  }));
  server.Get(std::string(api) + "/containers/json", recorded([this](const httplib::Request&, httplib::Response& response) {
    // Filtering is the client's request to check; answer every container like an unfiltered Podman.
    std::lock_guard lock(mutex);
    json list = json::array();
    for (const auto& [id, container] : containers)
      list.push_back({{"Id", id}, {"Names", {container.name}}, {"State", container.state}, {"Labels", container.labels},
                      {"Image", "localhost/busybox:latest"}});
    response.set_content(list.dump(), "application/json");
  }));
}

FakeLibpodServer::FakeLibpodServer() : state_(std::make_unique<State>()) {
  state_->add_routes();
  state_->server.set_address_family(AF_UNIX);
  REQUIRE(state_->server.bind_to_port(socket_path(), 80));
  state_->thread = std::thread([state = state_.get()] {
    state->server.listen_after_bind();
    state->finished = true;
  });
  // stop() is ignored until the server runs, so a failure below must not leave it serving.
  bool running = eventually([&] { return state_->server.is_running() || state_->finished; });
  if (!running || state_->finished) {
    state_->server.stop();
    state_->thread.join();
    FAIL("the fake libpod server did not start");
  }
}

FakeLibpodServer::~FakeLibpodServer() {
  state_->server.stop();
  state_->thread.join();
}

std::string FakeLibpodServer::socket_path() const { return (state_->dir / "podman.sock").string(); }

void FakeLibpodServer::add_image(const std::string& reference) {
  std::lock_guard lock(state_->mutex);
  state_->images.insert(reference);
}

void FakeLibpodServer::set_image_config(const std::string& reference, const std::string& config_json) {
  std::lock_guard lock(state_->mutex);
  state_->images.insert(reference);
  state_->image_configs[reference] = config_json;
}

void FakeLibpodServer::add_container(const ContainerSummary& container) {
  std::lock_guard lock(state_->mutex);
  state_->containers[container.id] = container;
}

void FakeLibpodServer::set_ping_status(int status) {
  std::lock_guard lock(state_->mutex);
  state_->ping_status = status;
}

void FakeLibpodServer::fail_create(int status, const std::string& cause, const std::string& message) {
  std::lock_guard lock(state_->mutex);
  state_->create_failure = {status, json{{"cause", cause}, {"message", message}, {"response", status}}};
}

void FakeLibpodServer::set_build_answer(std::vector<std::string> json_lines) {
  std::lock_guard lock(state_->mutex);
  state_->build_lines = std::move(json_lines);
}

void FakeLibpodServer::fail_remove(int status) {
  std::lock_guard lock(state_->mutex);
  state_->remove_failure = status;
}

std::vector<RecordedRequest> FakeLibpodServer::requests() const {
  std::lock_guard lock(state_->mutex);
  return state_->requests;
}

std::optional<RecordedRequest> FakeLibpodServer::last_request(const std::string& method,
                                                              const std::string& path_prefix) const {
  std::lock_guard lock(state_->mutex);
  for (auto it = state_->requests.rbegin(); it != state_->requests.rend(); ++it)
    if (it->method == method && it->path.starts_with(path_prefix)) return *it;
  return std::nullopt;
}

}  // namespace modbox::testing
