// The libpod REST API over a unix socket: the agent's only way of talking to Podman.

#include <fcntl.h>
#include <httplib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "agent/podman.h"
#include "common/system.h"
#include "common/unique_fd.h"

namespace modbox {

using nlohmann::json;

namespace {

constexpr const char* api = "/v4.0.0/libpod";

/// Base64 with the URL alphabet and padding: Podman decodes X-Registry-Auth with Go's base64.URLEncoding.
std::string base64_url(const std::string& data) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string encoded;
  std::size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    unsigned value = (static_cast<unsigned char>(data[i]) << 16) | (static_cast<unsigned char>(data[i + 1]) << 8) |
                     static_cast<unsigned char>(data[i + 2]);
    for (int shift : {18, 12, 6, 0}) encoded.push_back(alphabet[(value >> shift) & 63]);
  }
  if (std::size_t rest = data.size() - i; rest > 0) {
    unsigned value = static_cast<unsigned char>(data[i]) << 16;
    if (rest == 2) value |= static_cast<unsigned char>(data[i + 1]) << 8;
    encoded.push_back(alphabet[(value >> 18) & 63]);
    encoded.push_back(alphabet[(value >> 12) & 63]);
    encoded.push_back(rest == 2 ? alphabet[(value >> 6) & 63] : '=');
    encoded.push_back('=');
  }
  return encoded;
}

/// Podman's error bodies are {"cause", "message", "response"}; keep the message.
Error podman_error(const std::string& what, int status, const std::string& body) {
  json parsed = json::parse(body, nullptr, false);
  std::string message = parsed.is_object() && parsed.contains("message") && parsed["message"].is_string()
                            ? parsed["message"].get<std::string>()
                            : body.substr(0, 300);
  ErrorKind kind = status == 404 ? ErrorKind::not_found : status == 409 ? ErrorKind::conflict : ErrorKind::internal;
  return Error{kind, what + ": podman: " + message, {}};
}

class LibpodClient final : public Podman {
 public:
  explicit LibpodClient(std::string socket_path) : socket_path_(std::move(socket_path)) {}

  Result<void> ping() override {
    auto response = request("GET", "/_ping", "", std::chrono::seconds(5));
    if (!response) return std::unexpected(response.error());
    if (response->status != 200) return std::unexpected(podman_error("ping", response->status, response->body));
    return {};
  }

  Result<bool> image_exists(const std::string& reference) override {
    auto response = request("GET", std::string(api) + "/images/" + percent_encode(reference) + "/exists", "",
                            std::chrono::seconds(30));
    if (!response) return std::unexpected(response.error());
    if (response->status == 204) return true;
    if (response->status == 404) return false;
    return std::unexpected(podman_error("checking image " + reference, response->status, response->body));
  }

  Result<std::string> create_container(const ContainerSpec& spec) override {
    json body = {{"name", spec.name}, {"image", spec.image}, {"labels", spec.labels}, {"env", spec.env}};
    if (!spec.entrypoint.empty()) body["entrypoint"] = spec.entrypoint;
    if (!spec.command.empty()) body["command"] = spec.command;
    if (!spec.user.empty()) body["user"] = spec.user;
    if (spec.timeout_seconds) body["timeout"] = *spec.timeout_seconds;
    if (spec.memory_bytes) body["resource_limits"] = {{"memory", {{"limit", *spec.memory_bytes}}}};
    json mounts = json::array();
    for (const auto& mount : spec.mounts)
      mounts.push_back({{"type", "bind"},
                        {"source", mount.source},
                        {"destination", mount.destination},
                        {"options", mount.read_only ? json::array({"ro"}) : json::array({"rw"})}});
    if (!mounts.empty()) body["mounts"] = mounts;
    if (spec.no_network) body["netns"] = {{"nsmode", "none"}};
    auto response = request("POST", std::string(api) + "/containers/create", body.dump(), std::chrono::seconds(60));
    if (!response) return std::unexpected(response.error());
    if (response->status != 201) return std::unexpected(podman_error("creating container", response->status, response->body));
    json parsed = json::parse(response->body, nullptr, false);
    if (!parsed.is_object() || !parsed.contains("Id") || !parsed["Id"].is_string())
      return fail(ErrorKind::internal, "creating container: podman answered without an Id");
    return parsed["Id"].get<std::string>();
  }

  Result<void> start_container(const std::string& id) override {
    auto response = request("POST", std::string(api) + "/containers/" + id + "/start", "", std::chrono::seconds(60));
    if (!response) return std::unexpected(response.error());
    if (response->status != 204 && response->status != 304)
      return std::unexpected(podman_error("starting container", response->status, response->body));
    return {};
  }

  Result<void> remove_container(const std::string& id) override {
    auto response = request("DELETE", std::string(api) + "/containers/" + id + "?force=true&timeout=0&v=true", "",
                            std::chrono::seconds(60));
    if (!response) return std::unexpected(response.error());
    if (response->status == 200 || response->status == 204 || response->status == 404) return {};
    return std::unexpected(podman_error("removing container", response->status, response->body));
  }

  Result<ContainerState> inspect_container(const std::string& id) override {
    auto response =
        request("GET", std::string(api) + "/containers/" + percent_encode(id) + "/json", "", std::chrono::seconds(30));
    if (!response) return std::unexpected(response.error());
    if (response->status != 200)
      return std::unexpected(podman_error("inspecting container", response->status, response->body));
    json parsed = json::parse(response->body, nullptr, false);
    if (!parsed.is_object() || !parsed.contains("State") || !parsed["State"].is_object())
      return fail(ErrorKind::internal, "inspecting container: podman answered without a State");
    const json& state = parsed["State"];
    ContainerState result;
    auto text = state.find("Status");
    if (text != state.end() && text->is_string()) result.status = text->get<std::string>();
    auto flag = [&](const char* name) {
      auto it = state.find(name);
      return it != state.end() && it->is_boolean() && it->get<bool>();
    };
    result.running = flag("Running");
    result.oom_killed = flag("OOMKilled");
    if (auto code = state.find("ExitCode"); code != state.end() && code->is_number_integer())
      result.exit_code = code->get<int>();
    return result;
  }

  Result<std::vector<ContainerSummary>> list_containers(const std::string& label_key,
                                                        const std::string& label_value) override {
    json filters = {{"label", {label_key + "=" + label_value}}};
    auto response = request("GET", std::string(api) + "/containers/json?all=true&filters=" + percent_encode(filters.dump()),
                            "", std::chrono::seconds(30));
    if (!response) return std::unexpected(response.error());
    if (response->status != 200) return std::unexpected(podman_error("listing containers", response->status, response->body));
    json parsed = json::parse(response->body, nullptr, false);
    if (!parsed.is_array()) return fail(ErrorKind::internal, "listing containers: podman answered with a non-list");
    std::vector<ContainerSummary> containers;
    try {
      for (const auto& item : parsed) {
        ContainerSummary summary;
        summary.id = item.at("Id").get<std::string>();
        if (item.contains("Names") && item["Names"].is_array() && !item["Names"].empty())
          summary.name = item["Names"][0].get<std::string>();
        summary.state = item.value("State", "");
        if (item.contains("Labels") && item["Labels"].is_object())
          summary.labels = item["Labels"].get<std::map<std::string, std::string>>();
        containers.push_back(std::move(summary));
      }
    } catch (const json::exception& error) {
      return fail(ErrorKind::internal, std::string("listing containers: unexpected answer: ") + error.what());
    }
    return containers;
  }

  Result<ImageConfig> image_config(const std::string& reference) override {
    auto response = request("GET", std::string(api) + "/images/" + percent_encode(reference) + "/json", "",
                            std::chrono::seconds(30));
    if (!response) return std::unexpected(response.error());
    if (response->status != 200)
      return std::unexpected(podman_error("inspecting image " + reference, response->status, response->body));
    json parsed = json::parse(response->body, nullptr, false);
    if (!parsed.is_object()) return fail(ErrorKind::internal, "inspecting image " + reference + ": podman answered with a non-object");
    // Entrypoint and Cmd are lists of strings, or null / absent when the image sets none.
    auto strings = [&](const char* field) -> std::optional<std::vector<std::string>> {
      if (!parsed.contains("Config") || !parsed["Config"].is_object()) return std::vector<std::string>{};
      const json& config = parsed["Config"];
      if (!config.contains(field) || config[field].is_null()) return std::vector<std::string>{};
      if (!config[field].is_array()) return std::nullopt;
      std::vector<std::string> values;
      for (const auto& item : config[field]) {
        if (!item.is_string()) return std::nullopt;
        values.push_back(item.get<std::string>());
      }
      return values;
    };
    auto entrypoint = strings("Entrypoint");
    auto command = strings("Cmd");
    if (!entrypoint || !command)
      return fail(ErrorKind::internal, "inspecting image " + reference + ": Config.Entrypoint or Config.Cmd is not a list of strings");
    // User is a string, or null / absent when the image sets none.
    std::string user;
    if (parsed.contains("Config") && parsed["Config"].is_object() && parsed["Config"].contains("User") &&
        !parsed["Config"]["User"].is_null()) {
      if (!parsed["Config"]["User"].is_string())
        return fail(ErrorKind::internal, "inspecting image " + reference + ": Config.User is not a string");
      user = parsed["Config"]["User"].get<std::string>();
    }
    auto env = strings("Env");
    if (!env)
      return fail(ErrorKind::internal, "inspecting image " + reference + ": Config.Env is not a list of strings");
    std::string working_dir;
    if (parsed.contains("Config") && parsed["Config"].is_object() && parsed["Config"].contains("WorkingDir") &&
        parsed["Config"]["WorkingDir"].is_string())
      working_dir = parsed["Config"]["WorkingDir"].get<std::string>();
    return ImageConfig{std::move(*entrypoint), std::move(*command), std::move(user), std::move(*env),
                       std::move(working_dir)};
  }

  Result<void> pull_image(const std::string& reference, const PullOptions& options) override {
    auto client = connect(options.timeout);
    httplib::Headers headers;
    if (options.auth) {
      json auth = {{"username", options.auth->username}, {"password", options.auth->password}};
      headers.emplace("X-Registry-Auth", base64_url(auth.dump()));
    }
    std::string path = std::string(api) + "/images/pull?reference=" + percent_encode(reference) +
                       "&tlsVerify=" + (options.tls_verify ? "true" : "false") + "&quiet=true";
    auto result = client->Post(path.c_str(), headers, "", "application/json");
    if (!result)
      return fail(ErrorKind::unavailable, "pulling " + reference + ": podman is not answering (" +
                                              httplib::to_string(result.error()) + ")");
    if (result->status != 200) return std::unexpected(podman_error("pulling " + reference, result->status, result->body));
    // 200 starts a stream of JSON lines; a failure arrives as a line with "error".
    std::size_t start = 0;
    while (start < result->body.size()) {
      std::size_t end = result->body.find('\n', start);
      if (end == std::string::npos) end = result->body.size();
      json line = json::parse(result->body.substr(start, end - start), nullptr, false);
      if (line.is_object() && line.contains("error") && line["error"].is_string() && !line["error"].get<std::string>().empty())
        return fail(ErrorKind::internal, "pulling " + reference + ": podman: " + line["error"].get<std::string>());
      start = end + 1;
    }
    return {};
  }

  Result<std::string> commit_container(const std::string& id, const CommitOptions& options) override {
    std::string path = std::string(api) + "/commit?container=" + percent_encode(id) +
                       "&repo=" + percent_encode(options.repository) + "&tag=" + percent_encode(options.tag) +
                       "&pause=" + (options.pause ? "true" : "false") + "&format=oci";
    // One `changes` parameter per instruction: Podman splits nothing inside one (JSON forms keep their commas).
    for (const auto& change : options.changes) path += "&changes=" + percent_encode(change);
    auto response = request("POST", path, "", options.timeout);
    if (!response) return std::unexpected(response.error());
    if (response->status != 200)
      return std::unexpected(podman_error("committing container " + id, response->status, response->body));
    // The body is the copy's progress as plain lines, then {"Id": "..."}.
    std::size_t start = response->body.rfind('{');
    json parsed = start == std::string::npos ? json() : json::parse(response->body.substr(start), nullptr, false);
    if (!parsed.is_object() || !parsed.contains("Id") || !parsed["Id"].is_string())
      return fail(ErrorKind::internal, "committing container " + id + ": podman answered without an image Id");
    return parsed["Id"].get<std::string>();
  }

  Result<std::string> build_image(const BuildOptions& options,
                                  const std::function<bool(std::string_view line)>& on_output) override {
    UniqueFd context;
    std::uint64_t context_size = 0;
    if (!options.context_file.empty()) {
      context = UniqueFd(::open(options.context_file.c_str(), O_RDONLY | O_CLOEXEC));
      struct stat info {};
      if (!context.valid() || ::fstat(context.get(), &info) != 0)
        return std::unexpected(system_error("open", options.context_file.string(), errno));
      context_size = static_cast<std::uint64_t>(info.st_size);
    }
    const std::string& prefix = options.context_prefix;
    auto client = connect(options.timeout);
    httplib::Request request;
    request.method = "POST";
    // pullpolicy=never: no registry is assumed reachable, and a base that is not here fails at once.
    // layers=false: one working container committed at the end, so a failed build leaves no image.
    request.path = std::string(api) + "/build?dockerfile=" + percent_encode(options.containerfile) +
                   "&t=" + percent_encode(options.reference) +
                   "&pullpolicy=never&layers=false&rm=true&forcerm=true&httpproxy=true";
    request.headers = {{"Content-Type", "application/x-tar"}};
    request.content_length_ = prefix.size() + context_size;
    request.content_provider_ = [&](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
      if (offset < prefix.size()) {
        std::size_t count = std::min(length, prefix.size() - offset);
        return sink.write(prefix.data() + offset, count);
      }
      char buffer[64 << 10];
      std::size_t wanted = std::min(length, sizeof buffer);
      ssize_t got = ::pread(context.get(), buffer, wanted, static_cast<off_t>(offset - prefix.size()));
      return got > 0 && sink.write(buffer, static_cast<std::size_t>(got));
    };
    int status = 0;
    std::string pending, error_body, failure, last_stream;
    bool cancelled = false;
    request.response_handler = [&](const httplib::Response& response) {
      status = response.status;
      return true;
    };
    // 200 starts a stream of JSON lines: {"stream": text} as the build goes, {"error": reason} when it
    // fails, and last {"stream": "<image id>\n"}.
    auto take_line = [&](std::string_view line) {
      json parsed = json::parse(line, nullptr, false);
      if (!parsed.is_object()) return;
      if (auto error = parsed.find("error");
          error != parsed.end() && error->is_string() && !error->get<std::string>().empty()) {
        failure = error->get<std::string>();
        while (!failure.empty() && failure.back() == '\n') failure.pop_back();
        return;
      }
      auto stream = parsed.find("stream");
      if (stream == parsed.end() || !stream->is_string()) return;
      std::string text = stream->get<std::string>();
      std::size_t start = 0;
      while (start < text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        last_stream = text.substr(start, end - start);
        if (!cancelled && !on_output(last_stream)) cancelled = true;
        start = end + 1;
      }
    };
    request.content_receiver = [&](const char* data, std::size_t length, std::uint64_t, std::uint64_t) {
      if (status != 200) {
        if (error_body.size() < (64 << 10)) error_body.append(data, length);
        return true;
      }
      pending.append(data, length);
      std::size_t newline;
      while ((newline = pending.find('\n')) != std::string::npos) {
        take_line(std::string_view(pending).substr(0, newline));
        pending.erase(0, newline + 1);
      }
      return !cancelled;
    };
    auto result = client->send(request);
    if (cancelled) return fail(ErrorKind::unavailable, "building " + options.reference + " was cancelled");
    if (!result)
      return fail(ErrorKind::unavailable, "building " + options.reference + ": podman is not answering (" +
                                              httplib::to_string(result.error()) + ")");
    if (status != 200) return std::unexpected(podman_error("building " + options.reference, status, error_body));
    if (!pending.empty()) take_line(pending);
    if (!failure.empty()) return fail(ErrorKind::bad_request, failure);
    // The last line is the new image's id.
    if (last_stream.size() < 12 || last_stream.find_first_not_of("0123456789abcdef") != std::string::npos)
      return fail(ErrorKind::internal, "building " + options.reference + ": podman's answer ended without an image id");
    return last_stream;
  }

  Result<void> remove_image(const std::string& reference) override {
    auto response = request("DELETE", std::string(api) + "/images/" + percent_encode(reference) + "?force=false", "",
                            std::chrono::seconds(60));
    if (!response) return std::unexpected(response.error());
    if (response->status == 200 || response->status == 404) return {};
    return std::unexpected(podman_error("removing image " + reference, response->status, response->body));
  }

  Result<PodmanHostInfo> host_info() override {
    auto response = request("GET", std::string(api) + "/info", "", std::chrono::seconds(30));
    if (!response) return std::unexpected(response.error());
    if (response->status != 200) return std::unexpected(podman_error("reading podman info", response->status, response->body));
    json parsed = json::parse(response->body, nullptr, false);
    if (!parsed.is_object() || !parsed.contains("host") || !parsed["host"].is_object())
      return fail(ErrorKind::internal, "reading podman info: unexpected answer");
    const json& host = parsed["host"];
    PodmanHostInfo info;
    info.cgroup_version = host.value("cgroupVersion", "");
    if (host.contains("security") && host["security"].is_object()) info.rootless = host["security"].value("rootless", true);
    if (host.contains("cgroupControllers") && host["cgroupControllers"].is_array())
      for (const auto& controller : host["cgroupControllers"])
        if (controller.is_string()) info.cgroup_controllers.push_back(controller.get<std::string>());
    return info;
  }

 private:
  struct Reply {
    int status;
    std::string body;
  };

  std::unique_ptr<httplib::Client> connect(std::chrono::milliseconds read_timeout) const {
    auto client = std::make_unique<httplib::Client>(socket_path_, 80);
    client->set_address_family(AF_UNIX);
    // cpp-httplib would send the socket path as Host, which Podman rejects.
    client->set_default_headers({{"Host", "localhost"}});
    client->set_connection_timeout(std::chrono::seconds(5));
    client->set_read_timeout(read_timeout);
    client->set_write_timeout(std::chrono::seconds(30));
    return client;
  }

  Result<Reply> request(const std::string& method, const std::string& path, const std::string& body,
                        std::chrono::milliseconds timeout) const {
    auto client = connect(timeout);
    httplib::Result result = method == "GET"      ? client->Get(path.c_str())
                             : method == "DELETE" ? client->Delete(path.c_str())
                                                  : client->Post(path.c_str(), body, "application/json");
    if (!result)
      return fail(ErrorKind::unavailable,
                  "podman service at " + socket_path_ + " is not answering (" + httplib::to_string(result.error()) + ")");
    return Reply{result->status, result->body};
  }

  std::string socket_path_;
};

}  // namespace

std::unique_ptr<Podman> make_libpod_client(std::string socket_path) {
  return std::make_unique<LibpodClient>(std::move(socket_path));
}

}  // namespace modbox
