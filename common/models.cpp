#include "common/models.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "common/json_support.h"

#include "common/body_reader.h"

namespace modbox {

using nlohmann::json;
using json_support::decode;
using json_support::decode_list;
using json_support::optional_field;
using json_support::optional_json;

std::string_view to_string(SandboxStatus status) {
  switch (status) {
    case SandboxStatus::provisioning: return "provisioning";
    case SandboxStatus::running: return "running";
    case SandboxStatus::failed: return "failed";
    case SandboxStatus::destroyed: return "destroyed";
  }
  return "unknown";
}

std::optional<SandboxStatus> parse_sandbox_status(std::string_view text) {
  for (auto status : {SandboxStatus::provisioning, SandboxStatus::running, SandboxStatus::failed,
                      SandboxStatus::destroyed})
    if (to_string(status) == text) return status;
  return std::nullopt;
}

std::string_view to_string(DestroyReason reason) {
  switch (reason) {
    case DestroyReason::requested: return "requested";
    case DestroyReason::ttl: return "ttl";
    case DestroyReason::idle: return "idle";
    case DestroyReason::exited: return "exited";
    case DestroyReason::lost: return "lost";
  }
  return "unknown";
}

std::optional<DestroyReason> parse_destroy_reason(std::string_view text) {
  for (auto reason : {DestroyReason::requested, DestroyReason::ttl, DestroyReason::idle, DestroyReason::exited,
                      DestroyReason::lost})
    if (to_string(reason) == text) return reason;
  return std::nullopt;
}

std::string_view to_string(ReadinessProbe::Kind kind) {
  switch (kind) {
    case ReadinessProbe::Kind::http: return "http";
    case ReadinessProbe::Kind::tcp: return "tcp";
    case ReadinessProbe::Kind::exec: return "exec";
    case ReadinessProbe::Kind::process:
      return "process";
  }
  return "unknown";
}

std::string_view to_string(ReadinessState::Phase phase) {
  switch (phase) {
    case ReadinessState::Phase::probing: return "probing";
    case ReadinessState::Phase::passed: return "passed";
    case ReadinessState::Phase::timed_out: return "timed_out";
  }
  return "unknown";
}

std::string describe(const Sandbox& sandbox) {
  return "sandbox " + sandbox.name + " (" + sandbox.id +
         (sandbox.workspace_id ? ", workspace " + *sandbox.workspace_id : "") + ")";
}

std::string describe(const ReadinessProbe& probe) {
  switch (probe.kind) {
    case ReadinessProbe::Kind::http: return "HTTP GET / on port " + std::to_string(probe.port);
    case ReadinessProbe::Kind::tcp: return "tcp port " + std::to_string(probe.port);
    case ReadinessProbe::Kind::exec: {
      std::string text = "exec";
      for (const auto& argument : probe.command) text += " " + argument;
      return text;
    }
    case ReadinessProbe::Kind::process:
      return "process " + probe.process + " running";
  }
  return "unknown probe";
}

int http_status(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::bad_request: return 400;
    case ErrorKind::unauthorized: return 401;
    case ErrorKind::forbidden: return 403;
    case ErrorKind::not_found: return 404;
    case ErrorKind::timeout: return 408;
    case ErrorKind::conflict: return 409;
    case ErrorKind::too_large: return 413;
    case ErrorKind::validation: return 422;
    case ErrorKind::bad_gateway: return 502;
    case ErrorKind::unavailable: return 503;
    case ErrorKind::insufficient_storage: return 507;
    case ErrorKind::internal: return 500;
  }
  return 500;
}

ErrorKind error_kind_for_status(int status) {
  for (auto kind : {ErrorKind::bad_request, ErrorKind::unauthorized, ErrorKind::forbidden, ErrorKind::not_found,
                    ErrorKind::timeout, ErrorKind::conflict, ErrorKind::too_large, ErrorKind::validation,
                    ErrorKind::bad_gateway, ErrorKind::unavailable, ErrorKind::insufficient_storage})
    if (http_status(kind) == status) return kind;
  return status >= 400 && status < 500 ? ErrorKind::bad_request : ErrorKind::internal;
}

namespace {

const char* const task_id_pattern = "^[A-Za-z0-9._-]+$";

bool is_task_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

std::optional<std::string> read_task_id(BodyReader& reader) {
  auto task_id = reader.string("task_id", true);
  if (task_id) {
    if (auto problem = check_task_id(*task_id, {"body", "task_id"})) {
      reader.add(problem->loc, problem->msg, problem->type);
      return std::nullopt;
    }
  }
  return task_id;
}

/// `{"8000": "http://127.0.0.1:41001"}`, or null when no port is served.
json port_urls_object(const Sandbox& sandbox) {
  auto urls = port_urls(sandbox);
  if (urls.empty()) return nullptr;
  json object = json::object();
  for (const auto& [port, url] : urls) object[std::to_string(port)] = url;
  return object;
}

/// The port a URL ends with ("http://127.0.0.1:41001" → 41001).
int url_port(const std::string& url) {
  auto colon = url.rfind(':');
  if (colon == std::string::npos) throw std::invalid_argument("a port URL without a port");
  return std::stoi(url.substr(colon + 1));
}

/// {"tcp": {"port": 8000}, "interval_ms": 100}, {"exec": {"command": [...]}, ...}, {"http": {"port": 8000}, ...}.
json readiness_probe_object(const ReadinessProbe& probe) {
  json detail = probe.kind == ReadinessProbe::Kind::exec      ? json{{"command", probe.command}}
                : probe.kind == ReadinessProbe::Kind::process ? json{{"name", probe.process}}
                                                              : json{{"port", probe.port}};
  return json{{std::string(to_string(probe.kind)), detail}, {"interval_ms", probe.interval_ms}};
}

ReadinessProbe readiness_probe_from_object(const json& object) {
  ReadinessProbe probe;
  probe.interval_ms = object.value("interval_ms", limits::readiness_interval_default_ms);
  for (auto kind : {ReadinessProbe::Kind::http, ReadinessProbe::Kind::tcp, ReadinessProbe::Kind::exec,
                    ReadinessProbe::Kind::process}) {
    auto it = object.find(std::string(to_string(kind)));
    if (it == object.end()) continue;
    probe.kind = kind;
    if (kind == ReadinessProbe::Kind::exec) probe.command = it->at("command").get<std::vector<std::string>>();
    else if (kind == ReadinessProbe::Kind::process)
      probe.process = it->at("name").get<std::string>();
    else probe.port = it->at("port").get<int>();
    return probe;
  }
  throw std::invalid_argument("a readiness probe of no known type");
}

json readiness_object(const Sandbox& sandbox) {
  if (!sandbox.readiness_probe) return nullptr;
  const ReadinessState& state = sandbox.readiness;
  return json{{"state", to_string(state.phase)},
              {"attempts", state.attempts},
              {"last_result", state.last_passed ? json(*state.last_passed ? "passed" : "failed") : json(nullptr)},
              {"last_error", optional_json(state.last_error)}};
}

ReadinessState readiness_from_object(const json& object) {
  ReadinessState state;
  auto phase = object.value("state", "probing");
  for (auto candidate : {ReadinessState::Phase::probing, ReadinessState::Phase::passed, ReadinessState::Phase::timed_out})
    if (to_string(candidate) == phase) state.phase = candidate;
  state.attempts = object.value("attempts", 0);
  if (auto result = optional_field<std::string>(object, "last_result")) state.last_passed = *result == "passed";
  state.last_error = optional_field<std::string>(object, "last_error");
  return state;
}

json sandbox_api_object(const Sandbox& sandbox) {
  json object = {
      {"id", sandbox.id},
      {"name", sandbox.name},
      {"status", to_string(sandbox.status)},
      {"sandbox_url", sandbox.status == SandboxStatus::running ? optional_json(sandbox.sandbox_url) : json(nullptr)},
      {"image", sandbox.image},
      {"image_id", optional_json(sandbox.image_id)},
      {"workspace_id", optional_json(sandbox.workspace_id)},
      {"created_by", sandbox.created_by},
      {"created_at", format_timestamp(sandbox.created_at)},
      {"destroyed_at", sandbox.destroyed_at ? json(format_timestamp(*sandbox.destroyed_at)) : json(nullptr)},
      {"destroy_reason", sandbox.destroy_reason ? json(to_string(*sandbox.destroy_reason)) : json(nullptr)},
      {"ttl_seconds", sandbox.ttl_seconds ? json(*sandbox.ttl_seconds) : json(nullptr)},
      {"ttl_extended_at", sandbox.ttl_extended_at ? json(format_timestamp(*sandbox.ttl_extended_at)) : json(nullptr)},
      {"idle_timeout_seconds", sandbox.idle_timeout_seconds ? json(*sandbox.idle_timeout_seconds) : json(nullptr)},
      {"tags", sandbox.tags},
      {"network", optional_json(sandbox.network)},
      {"expires_at", sandbox.expires_at() ? json(format_timestamp(*sandbox.expires_at())) : json(nullptr)},
      {"error", optional_json(sandbox.error)},
      {"api_key_set", sandbox.env_vars.contains("SANDBOX_API_KEY")},
      {"memory_mb", sandbox.memory_mb ? json(*sandbox.memory_mb) : json(nullptr)},
      {"memory_limit_enforced", sandbox.memory_limit_enforced ? json(*sandbox.memory_limit_enforced) : json(nullptr)},
      {"memory_limit_detail", optional_json(sandbox.memory_limit_detail)},
      {"progress", sandbox.status == SandboxStatus::provisioning ? optional_json(sandbox.progress) : json(nullptr)},
      {"ports", sandbox.ports},
      {"port_urls", port_urls_object(sandbox)},
      {"readiness_probe", sandbox.readiness_probe ? readiness_probe_object(*sandbox.readiness_probe) : json(nullptr)},
      {"readiness", readiness_object(sandbox)},
      {"ready_at", sandbox.ready_at ? json(format_timestamp(*sandbox.ready_at)) : json(nullptr)},
      {"startup_ms", sandbox.startup_ms ? json(*sandbox.startup_ms) : json(nullptr)},
      {"command", sandbox.command.empty() ? json(nullptr) : json(sandbox.command)},
      {"exit_code", sandbox.exit_code ? json(*sandbox.exit_code) : json(nullptr)},
      {"oom_killed", sandbox.oom_killed ? json(*sandbox.oom_killed) : json(nullptr)},
      {"from_pool", sandbox.from_pool},
  };
  return object;
}

Sandbox sandbox_from_api_object(const json& object) {
  Sandbox sandbox;
  sandbox.id = object.at("id").get<std::string>();
  sandbox.name = object.at("name").get<std::string>();
  auto status = parse_sandbox_status(object.at("status").get<std::string>());
  if (!status) throw json::other_error::create(501, "unknown status", &object);
  sandbox.status = *status;
  sandbox.sandbox_url = optional_field<std::string>(object, "sandbox_url");
  sandbox.image = object.value("image", "");
  sandbox.image_id = optional_field<std::string>(object, "image_id");
  sandbox.workspace_id = optional_field<std::string>(object, "workspace_id");
  sandbox.created_by = object.value("created_by", "");
  if (auto created = parse_timestamp(object.at("created_at").get<std::string>())) sandbox.created_at = *created;
  if (auto destroyed = optional_field<std::string>(object, "destroyed_at"))
    if (auto parsed = parse_timestamp(*destroyed)) sandbox.destroyed_at = *parsed;
  if (auto reason = optional_field<std::string>(object, "destroy_reason")) sandbox.destroy_reason = parse_destroy_reason(*reason);
  sandbox.ttl_seconds = optional_field<int>(object, "ttl_seconds");
  if (auto extended = optional_field<std::string>(object, "ttl_extended_at"))
    if (auto parsed = parse_timestamp(*extended)) sandbox.ttl_extended_at = *parsed;
  sandbox.idle_timeout_seconds = optional_field<int>(object, "idle_timeout_seconds");
  // Agents before tags and networks wrote neither field.
  sandbox.tags =
      optional_field<std::map<std::string, std::string>>(object, "tags").value_or(std::map<std::string, std::string>{});
  sandbox.network = optional_field<std::string>(object, "network");
  sandbox.error = optional_field<std::string>(object, "error");
  sandbox.memory_mb = optional_field<int>(object, "memory_mb");
  sandbox.memory_limit_enforced = optional_field<bool>(object, "memory_limit_enforced");
  sandbox.memory_limit_detail = optional_field<std::string>(object, "memory_limit_detail");
  sandbox.progress = optional_field<std::string>(object, "progress");
  // Agents before per-port URLs wrote neither field.
  sandbox.ports = optional_field<std::vector<int>>(object, "ports").value_or(std::vector<int>{});
  if (auto urls = optional_field<std::map<std::string, std::string>>(object, "port_urls"))
    for (const auto& [port, url] : *urls) sandbox.port_gateways[std::stoi(port)] = url_port(url);
  // Agents before readiness probes wrote none of these.
  if (auto probe = object.find("readiness_probe"); probe != object.end() && probe->is_object())
    sandbox.readiness_probe = readiness_probe_from_object(*probe);
  if (auto readiness = object.find("readiness"); readiness != object.end() && readiness->is_object())
    sandbox.readiness = readiness_from_object(*readiness);
  if (auto ready = optional_field<std::string>(object, "ready_at"))
    if (auto parsed = parse_timestamp(*ready)) sandbox.ready_at = *parsed;
  sandbox.startup_ms = optional_field<std::int64_t>(object, "startup_ms");
  // Agents before entrypoints wrote none of these.
  sandbox.command = optional_field<std::vector<std::string>>(object, "command").value_or(std::vector<std::string>{});
  sandbox.exit_code = optional_field<int>(object, "exit_code");
  sandbox.oom_killed = optional_field<bool>(object, "oom_killed");
  sandbox.from_pool = object.value("from_pool", false);  // agents before warm pools wrote none
  return sandbox;
}

/// The provision body's `ports`: each 1-65535, at most 16, none twice.
std::vector<int> read_ports(BodyReader& reader) {
  std::vector<int> ports =
      reader.integers("ports", limits::port_min, limits::port_max, limits::sandbox_ports_max_count);
  for (auto it = ports.begin(); it != ports.end(); ++it)
    if (std::find(ports.begin(), it, *it) != it) {
      reader.add({"body", "ports"}, "Value error, port " + std::to_string(*it) + " is given more than once",
                 "value_error");
      break;
    }
  return ports;
}

/// The keys of `object` other than `allowed`, each an "Extra inputs are not permitted" at loc + key.
bool refuse_extra_keys(BodyReader& reader, const json& object, std::vector<std::string> loc,
                       std::initializer_list<std::string_view> allowed) {
  bool refused = false;
  for (const auto& [key, item] : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    auto at = loc;
    at.push_back(key);
    reader.add(std::move(at), "Extra inputs are not permitted", "extra_forbidden");
    refused = true;
  }
  return refused;
}

/// A command as argv: a non-empty list of strings without NUL bytes; errors at `loc` (or its items).
std::optional<std::vector<std::string>> read_argv(BodyReader& reader, const json& value,
                                                  const std::vector<std::string>& loc) {
  if (!value.is_array()) {
    reader.add(loc, "Input should be a valid list", "list_type");
    return std::nullopt;
  }
  if (value.empty()) {
    reader.add(loc, "List should have at least 1 item after validation, not 0", "too_short");
    return std::nullopt;
  }
  std::vector<std::string> argv;
  bool bad = false;
  for (std::size_t index = 0; index < value.size(); ++index) {
    auto item_loc = loc;
    item_loc.push_back(std::to_string(index));
    if (!value[index].is_string()) {
      reader.add(std::move(item_loc), "Input should be a valid string", "string_type");
      bad = true;
    } else if (value[index].get<std::string>().find('\0') != std::string::npos) {
      reader.add(std::move(item_loc), "Value error, arguments must not contain NUL bytes", "value_error");
      bad = true;
    } else {
      argv.push_back(value[index].get<std::string>());
    }
  }
  if (bad) return std::nullopt;
  return argv;
}

/// The provision's `command`: absent or null is none; anything else must be a valid argv.
std::vector<std::string> read_command(BodyReader& reader) {
  const json* value = reader.value("command");
  if (value == nullptr) return {};
  return read_argv(reader, *value, {"body", "command"}).value_or(std::vector<std::string>{});
}

/// `{"tcp": {"port": N}}` or `{"exec": {"command": [...]}}`, with `interval_ms` beside the type (seed 004).
std::optional<ReadinessProbe> read_readiness_probe(BodyReader& reader) {
  const json* value = reader.value("readiness_probe");
  if (value == nullptr) return std::nullopt;
  const std::vector<std::string> loc{"body", "readiness_probe"};
  auto at = [&](std::initializer_list<std::string> more) {
    auto where = loc;
    where.insert(where.end(), more);
    return where;
  };
  if (!value->is_object()) {
    reader.add(loc, "Input should be a valid dictionary", "dict_type");
    return std::nullopt;
  }
  bool bad = refuse_extra_keys(reader, *value, loc, {"tcp", "exec", "interval_ms"});
  bool has_tcp = value->contains("tcp"), has_exec = value->contains("exec");
  if (has_tcp && has_exec) {
    reader.add(loc, "Value error, give one probe type, tcp or exec, not both", "value_error");
    return std::nullopt;
  }
  if (!has_tcp && !has_exec) {
    if (!bad) reader.add(loc, "Value error, give a probe type: tcp or exec", "value_error");
    return std::nullopt;
  }
  ReadinessProbe probe;
  if (value->contains("interval_ms")) {
    auto interval = reader.integer_at(value->at("interval_ms"), at({"interval_ms"}), limits::readiness_interval_min_ms,
                                      limits::readiness_interval_max_ms);
    if (!interval) bad = true;
    else probe.interval_ms = *interval;
  }
  std::string kind = has_tcp ? "tcp" : "exec";
  const json& detail = value->at(kind);
  if (!detail.is_object()) {
    reader.add(at({kind}), "Input should be a valid dictionary", "dict_type");
    return std::nullopt;
  }
  if (has_tcp) {
    probe.kind = ReadinessProbe::Kind::tcp;
    bad = refuse_extra_keys(reader, detail, at({kind}), {"port"}) || bad;
    if (!detail.contains("port") || detail["port"].is_null()) {
      reader.add(at({kind, "port"}), "Field required", "missing");
      return std::nullopt;
    }
    auto port = reader.integer_at(detail["port"], at({kind, "port"}), limits::port_min, limits::port_max);
    if (!port) return std::nullopt;
    probe.port = *port;
  } else {
    probe.kind = ReadinessProbe::Kind::exec;
    bad = refuse_extra_keys(reader, detail, at({kind}), {"command"}) || bad;
    auto command_loc = at({kind, "command"});
    if (!detail.contains("command") || detail["command"].is_null()) {
      reader.add(command_loc, "Field required", "missing");
      return std::nullopt;
    }
    auto command = read_argv(reader, detail["command"], command_loc);
    if (!command) return std::nullopt;
    probe.command = std::move(*command);
  }
  if (bad) return std::nullopt;
  return probe;
}

/// The provision body's `tags` (seed 004): a string → string object of at most 64 entries, keys of
/// 1–256 bytes without '=' (it separates key and value in a `tag=key=value` filter), values of at
/// most 256 bytes.
std::map<std::string, std::string> read_tags(BodyReader& reader) {
  std::map<std::string, std::string> tags;
  const json* value = reader.value("tags");
  if (value == nullptr) return tags;
  if (!value->is_object()) {
    reader.add({"body", "tags"}, "Input should be a valid dictionary", "dict_type");
    return tags;
  }
  if (value->size() > limits::tags_max_count) {
    reader.add({"body", "tags"},
               "Dictionary should have at most " + std::to_string(limits::tags_max_count) +
                   " items after validation, not " + std::to_string(value->size()),
               "too_long");
    return tags;
  }
  const std::string most = std::to_string(limits::tag_max_bytes);
  for (const auto& [key, item] : value->items()) {
    std::vector<std::string> loc{"body", "tags", key};
    if (key.empty())
      reader.add(loc, "Value error, tag keys must not be empty", "value_error");
    else if (key.size() > limits::tag_max_bytes)
      reader.add(loc, "Value error, tag keys must be at most " + most + " bytes", "value_error");
    else if (key.find_first_of(std::string_view("=\0", 2)) != std::string::npos)
      reader.add(loc, "Value error, tag keys must not contain '=' or NUL bytes", "value_error");
    else if (!item.is_string())
      reader.add(loc, "Input should be a valid string", "string_type");
    else if (item.get<std::string>().size() > limits::tag_max_bytes)
      reader.add(loc, "String should have at most " + most + " bytes", "string_too_long");
    else if (item.get<std::string>().find('\0') != std::string::npos)
      reader.add(loc, "Value error, tag values must not contain NUL bytes", "value_error");
    else
      tags[key] = item.get<std::string>();
  }
  return tags;
}

/// The provision body's `network`: only "none" (loopback only) is offered; absent is the default.
std::optional<std::string> read_network(BodyReader& reader) {
  auto network = reader.string("network", false);
  if (network && *network != "none") {
    reader.add({"body", "network"}, "Input should be 'none'", "literal_error");
    return std::nullopt;
  }
  return network;
}

}  // namespace

bool matches(const Sandbox& sandbox, const SandboxFilter& filter) {
  if (filter.status && sandbox.status != *filter.status) return false;
  for (const auto& wanted : filter.tags) {
    auto tag = sandbox.tags.find(wanted.key);
    if (tag == sandbox.tags.end() || tag->second != wanted.value) return false;
  }
  return true;
}

int proxied_port(const Sandbox& sandbox) {
  return sandbox.readiness_port.value_or(limits::default_proxied_port);
}

std::map<int, std::string> port_urls(const Sandbox& sandbox) {
  std::map<int, std::string> urls;
  if (sandbox.status != SandboxStatus::running || !sandbox.sandbox_url) return urls;
  // Same scheme and host as the sandbox URL, another port: "http://127.0.0.1:" + port.
  std::string base = sandbox.sandbox_url->substr(0, sandbox.sandbox_url->rfind(':') + 1);
  for (const auto& [port, host_port] : sandbox.port_gateways) urls[port] = base + std::to_string(host_port);
  return urls;
}

std::optional<FieldError> check_task_id(std::string_view task_id, std::vector<std::string> loc) {
  if (task_id.empty()) return FieldError{loc, "String should have at least 1 character", "string_too_short"};
  if (task_id.size() > limits::task_id_max_length)
    return FieldError{loc, "String should have at most " + std::to_string(limits::task_id_max_length) + " characters",
                      "string_too_long"};
  for (char c : task_id)
    if (!is_task_id_char(c))
      return FieldError{loc, std::string("String should match pattern '") + task_id_pattern + "'",
                        "string_pattern_mismatch"};
  return std::nullopt;
}

Result<ProvisionRequest> parse_provision_request(std::string_view body) {
  auto reader = BodyReader::parse(body);
  if (!reader) return std::unexpected(reader.error());
  ProvisionRequest request;
  request.task_id = read_task_id(*reader).value_or("");
  request.image_id = reader->string("image_id", false);
  request.image = reader->string("image", false);
  if (request.image && request.image->empty()) reader->add({"body", "image"}, "String should have at least 1 character", "string_too_short");
  request.ttl_seconds = reader->integer("ttl_seconds", false, limits::ttl_seconds_min, limits::ttl_seconds_max);
  request.env_vars = reader->env_vars("env_vars");
  request.ports = read_ports(*reader);
  request.readiness_probe = read_readiness_probe(*reader);
  request.idle_timeout_seconds = reader->integer("idle_timeout_seconds", false, limits::idle_timeout_seconds_min,
                                                 limits::idle_timeout_seconds_max);
  request.tags = read_tags(*reader);
  request.network = read_network(*reader);
  request.command = read_command(*reader);
  return reader->finish(std::move(request));
}

Result<WaitRequest> parse_wait_request(std::string_view body) {
  auto reader = BodyReader::parse(body);
  if (!reader) return std::unexpected(reader.error());
  WaitRequest request;
  request.task_id = read_task_id(*reader).value_or("");
  request.timeout_seconds =
      reader->integer("timeout", false, 0, limits::wait_timeout_max).value_or(limits::wait_timeout_default);
  return reader->finish(std::move(request));
}

Result<DestroyRequest> parse_destroy_request(std::string_view body) {
  auto reader = BodyReader::parse(body);
  if (!reader) return std::unexpected(reader.error());
  DestroyRequest request;
  request.task_id = read_task_id(*reader).value_or("");
  return reader->finish(std::move(request));
}

Result<ExtendRequest> parse_extend_request(std::string_view body) {
  auto reader = BodyReader::parse(body);
  if (!reader) return std::unexpected(reader.error());
  ExtendRequest request;
  request.task_id = read_task_id(*reader).value_or("");
  request.ttl_seconds =
      reader->integer("ttl_seconds", true, limits::ttl_seconds_min, limits::ttl_seconds_max).value_or(0);
  return reader->finish(std::move(request));
}

namespace {
ExecRequest read_exec_fields(BodyReader& reader) {
  ExecRequest request;
  request.command = reader.string("command", true).value_or("");
  if (request.command.find('\0') != std::string::npos)
    reader.add({"body", "command"}, "command must not contain NUL bytes", "value_error");
  request.timeout_ms = reader.integer("timeout", false, 1, limits::exec_timeout_max_ms)
                           .value_or(limits::exec_timeout_default_ms);
  request.cwd = reader.string("cwd", false).value_or("/");
  if (request.cwd.empty() || request.cwd.front() != '/' || request.cwd.find('\0') != std::string::npos)
    reader.add({"body", "cwd"}, "cwd must be an absolute path", "value_error");
  return request;
}
}  // namespace

Result<ExecRequest> parse_exec_request(std::string_view body) {
  auto reader = BodyReader::parse(body);
  if (!reader) return std::unexpected(reader.error());
  ExecRequest request = read_exec_fields(*reader);
  return reader->finish(std::move(request));
}

Result<SandboxExecRequest> parse_sandbox_exec_request(std::string_view body) {
  auto reader = BodyReader::parse(body);
  if (!reader) return std::unexpected(reader.error());
  SandboxExecRequest request;
  request.task_id = read_task_id(*reader).value_or("");
  request.exec = read_exec_fields(*reader);
  return reader->finish(std::move(request));
}

Result<SandboxStatus> parse_status_query(std::string_view value) {
  if (auto status = parse_sandbox_status(value)) return *status;
  return fail_validation({{{"query", "status"},
                           "Input should be 'provisioning', 'running', 'failed' or 'destroyed'",
                           "enum"}});
}

Result<std::vector<TagFilter>> parse_tag_queries(const std::vector<std::string>& values) {
  std::vector<TagFilter> filters;
  for (const auto& value : values) {
    auto equals = value.find('=');
    if (equals == std::string::npos || equals == 0 || equals > limits::tag_max_bytes ||
        value.size() - equals - 1 > limits::tag_max_bytes)
      return fail_validation(
          {{{"query", "tag"},
            "Value error, a tag filter is key=value (key 1-" + std::to_string(limits::tag_max_bytes) +
                " bytes, value at most " + std::to_string(limits::tag_max_bytes) + " bytes)",
            "value_error"}});
    filters.push_back({value.substr(0, equals), value.substr(equals + 1)});
  }
  return filters;
}

Result<LogsQuery> parse_logs_query(const std::multimap<std::string, std::string>& query) {
  LogsQuery parsed;
  std::vector<FieldError> errors;
  // The first of repeated names counts, as FastAPI reads a scalar parameter.
  auto first = [&](const char* name) {
    auto it = query.lower_bound(name);
    return it != query.end() && it->first == name ? it : query.end();
  };
  if (auto follow = first("follow"); follow != query.end()) {
    if (auto value = parse_query_bool(follow->second))
      parsed.follow = *value;
    else
      errors.push_back(
          {{"query", "follow"}, "Input should be a valid boolean, unable to interpret input", "bool_parsing"});
  }
  if (auto tail = first("tail"); tail != query.end()) {
    const std::string& text = tail->second;
    constexpr std::size_t tail_max = 1'000'000;
    bool digits = !text.empty() && text.size() <= 9 && text.find_first_not_of("0123456789") == std::string::npos;
    if (!digits && !text.empty() && text.front() == '-' && text.size() > 1 &&
        text.find_first_not_of("0123456789", 1) == std::string::npos)
      errors.push_back({{"query", "tail"}, "Input should be greater than or equal to 0", "greater_than_equal"});
    else if (!digits && text.find_first_not_of("0123456789") == std::string::npos && !text.empty())
      errors.push_back({{"query", "tail"}, "Input should be less than or equal to 1000000", "less_than_equal"});
    else if (!digits)
      errors.push_back(
          {{"query", "tail"}, "Input should be a valid integer, unable to parse string as an integer", "int_parsing"});
    else if (std::stoul(text) > tail_max)
      errors.push_back({{"query", "tail"}, "Input should be less than or equal to 1000000", "less_than_equal"});
    else
      parsed.tail = std::stoul(text);
  }
  if (!errors.empty()) return fail_validation(std::move(errors));
  return parsed;
}

std::string sandbox_to_json(const Sandbox& sandbox) { return sandbox_api_object(sandbox).dump(); }

std::string sandboxes_to_json(const std::vector<Sandbox>& sandboxes) {
  json array = json::array();
  for (const auto& sandbox : sandboxes) array.push_back(sandbox_api_object(sandbox));
  return array.dump();
}

std::string sandbox_record_to_json(const Sandbox& sandbox) {
  json object = sandbox_api_object(sandbox);
  object["sandbox_url"] = optional_json(sandbox.sandbox_url);
  object["env_vars"] = sandbox.env_vars;
  object["container_id"] = sandbox.container_id;
  object["gateway_port"] = sandbox.gateway_port;
  object["registry_id"] = optional_json(sandbox.registry_id);
  json gateways = json::object();
  for (const auto& [port, host_port] : sandbox.port_gateways) gateways[std::to_string(port)] = host_port;
  object["port_gateways"] = gateways;
  object["readiness_port"] = optional_json(sandbox.readiness_port);
  object["pool"] = optional_json(sandbox.pool);
  object.erase("port_urls");
  object.erase("expires_at");
  object.erase("api_key_set");
  object.erase("progress");
  object.erase("readiness");  // how the probe goes is not stored: a restarted agent probes afresh
  return object.dump(2);
}

Result<Sandbox> sandbox_record_from_json(std::string_view text) {
  return decode<Sandbox>(text, "sandbox record", [](const json& object) {
    Sandbox sandbox = sandbox_from_api_object(object);
    sandbox.env_vars = object.at("env_vars").get<std::map<std::string, std::string>>();
    sandbox.container_id = object.at("container_id").get<std::string>();
    sandbox.gateway_port = object.at("gateway_port").get<int>();
    sandbox.registry_id = optional_field<std::string>(object, "registry_id");
    // Records written before per-port URLs have neither field.
    if (auto gateways = optional_field<std::map<std::string, int>>(object, "port_gateways"))
      for (const auto& [port, host_port] : *gateways) sandbox.port_gateways[std::stoi(port)] = host_port;
    sandbox.readiness_port = optional_field<int>(object, "readiness_port");
    sandbox.pool = optional_field<std::string>(object, "pool");
    return sandbox;
  });
}

Result<Sandbox> sandbox_from_json(std::string_view text) {
  return decode<Sandbox>(text, "sandbox", [](const json& object) { return sandbox_from_api_object(object); });
}

Result<std::vector<Sandbox>> sandboxes_from_json(std::string_view text) {
  return decode_list<Sandbox>(text, "sandbox list", sandbox_from_api_object);
}

std::string provision_request_to_json(const ProvisionRequest& request) {
  json object = {{"task_id", request.task_id}, {"env_vars", request.env_vars}};
  if (request.image_id) object["image_id"] = *request.image_id;
  if (request.image) object["image"] = *request.image;
  if (request.ttl_seconds) object["ttl_seconds"] = *request.ttl_seconds;
  if (!request.ports.empty()) object["ports"] = request.ports;
  if (request.readiness_probe) object["readiness_probe"] = readiness_probe_object(*request.readiness_probe);
  if (request.idle_timeout_seconds) object["idle_timeout_seconds"] = *request.idle_timeout_seconds;
  if (!request.tags.empty()) object["tags"] = request.tags;
  if (request.network) object["network"] = *request.network;
  if (!request.command.empty()) object["command"] = request.command;
  return object.dump();
}

std::string wait_request_to_json(const WaitRequest& request) {
  return json{{"task_id", request.task_id}, {"timeout", request.timeout_seconds}}.dump();
}

std::string destroy_request_to_json(const DestroyRequest& request) { return json{{"task_id", request.task_id}}.dump(); }

std::string extend_request_to_json(const ExtendRequest& request) {
  return json{{"task_id", request.task_id}, {"ttl_seconds", request.ttl_seconds}}.dump();
}

namespace {
json exec_request_object(const ExecRequest& request) {
  return {{"command", request.command}, {"timeout", request.timeout_ms}, {"cwd", request.cwd}};
}
}  // namespace

std::string exec_request_to_json(const ExecRequest& request) { return exec_request_object(request).dump(); }

std::string sandbox_exec_request_to_json(const SandboxExecRequest& request) {
  json object = exec_request_object(request.exec);
  object["task_id"] = request.task_id;
  return object.dump();
}

std::string exec_result_to_json(const ExecResult& result) {
  // Command output is arbitrary bytes; invalid UTF-8 is replaced rather than failing the dump.
  return json{{"exitCode", result.exit_code},
              {"stdout", result.stdout_text},
              {"stderr", result.stderr_text},
              {"killed", result.killed},
              {"signal", optional_json(result.signal)},
              {"durationMs", result.duration_ms},
              {"truncated", result.truncated}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<ExecResult> exec_result_from_json(std::string_view text) {
  return decode<ExecResult>(text, "exec result", [](const json& object) {
    ExecResult result;
    result.exit_code = object.at("exitCode").get<int>();
    result.stdout_text = object.at("stdout").get<std::string>();
    result.stderr_text = object.at("stderr").get<std::string>();
    result.killed = object.at("killed").get<bool>();
    result.signal = optional_field<std::string>(object, "signal");
    result.duration_ms = object.at("durationMs").get<std::int64_t>();
    result.truncated = object.at("truncated").get<bool>();
    return result;
  });
}

namespace {
json uploaded_file_object(const UploadedFile& file) {
  return json{{"filename", file.filename},
              {"originalName", file.original_name},
              {"size", file.size},
              {"mimetype", file.mimetype},
              {"uploadedAt", format_timestamp(file.uploaded_at)}};
}

UploadedFile uploaded_file_from_object(const json& object) {
  UploadedFile file;
  file.filename = object.at("filename").get<std::string>();
  file.original_name = object.at("originalName").get<std::string>();
  file.size = object.at("size").get<std::uint64_t>();
  file.mimetype = object.at("mimetype").get<std::string>();
  auto uploaded = parse_timestamp(object.at("uploadedAt").get<std::string>());
  if (!uploaded) throw std::invalid_argument(uploaded.error().message);
  file.uploaded_at = *uploaded;
  return file;
}
}  // namespace

// File names come from inside the sandbox and may be any bytes: invalid UTF-8 is replaced.
std::string uploaded_file_to_json(const UploadedFile& file) {
  return uploaded_file_object(file).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string uploaded_files_to_json(const std::vector<UploadedFile>& files) {
  json array = json::array();
  for (const auto& file : files) array.push_back(uploaded_file_object(file));
  return array.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string file_deleted_to_json(const std::string& filename) {
  return json{{"filename", filename}, {"deleted", true}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<UploadedFile> uploaded_file_from_json(std::string_view text) {
  return decode<UploadedFile>(text, "uploaded file", uploaded_file_from_object);
}

Result<std::vector<UploadedFile>> uploaded_files_from_json(std::string_view text) {
  return decode_list<UploadedFile>(text, "file list", uploaded_file_from_object);
}

namespace {
json ttl_layers_array(const std::vector<TtlLayer>& layers) {
  json array = json::array();
  for (const auto& layer : layers)
    array.push_back({{"name", layer.name}, {"active", layer.active}, {"detail", layer.detail}});
  return array;
}
}  // namespace

std::string agent_status_to_json(const AgentStatus& status) {
  return json{{"version", status.version},
              {"pid", status.pid},
              {"user", status.user},
              {"state_dir", status.state_dir},
              {"socket_path", status.socket_path},
              {"api_url", optional_json(status.api_url)},
              {"e2b_url", optional_json(status.e2b_url)},
              {"e2b_domain", optional_json(status.e2b_domain)},
              {"podman_ready", status.podman_ready},
              {"podman_detail", status.podman_detail},
              {"runtime", status.runtime},
              {"live_sandboxes", status.live_sandboxes},
              {"ttl_layers", ttl_layers_array(status.ttl_layers)}}
      .dump();
}

Result<AgentStatus> agent_status_from_json(std::string_view text) {
  return decode<AgentStatus>(text, "agent status", [](const json& object) {
    AgentStatus status;
    status.version = object.at("version").get<std::string>();
    status.pid = object.at("pid").get<int>();
    status.user = object.at("user").get<std::string>();
    status.state_dir = object.at("state_dir").get<std::string>();
    status.socket_path = object.at("socket_path").get<std::string>();
    status.api_url = optional_field<std::string>(object, "api_url");
    status.e2b_url = optional_field<std::string>(object, "e2b_url");
    status.e2b_domain = optional_field<std::string>(object, "e2b_domain");
    status.podman_ready = object.at("podman_ready").get<bool>();
    status.podman_detail = object.at("podman_detail").get<std::string>();
    status.runtime = object.at("runtime").get<std::string>();
    status.live_sandboxes = object.at("live_sandboxes").get<std::size_t>();
    // Agents before the TTL layers were reported sent none.
    if (auto layers = object.find("ttl_layers"); layers != object.end() && layers->is_array())
      for (const auto& layer : *layers)
        status.ttl_layers.push_back(
            TtlLayer{layer.at("name").get<std::string>(), layer.at("active").get<bool>(), layer.value("detail", "")});
    return status;
  });
}

std::string error_to_json(const Error& error) {
  // Messages echo client input (paths, names) that may not be UTF-8: replace, never throw.
  constexpr auto replace = json::error_handler_t::replace;
  if (error.kind != ErrorKind::validation) return json{{"detail", error.message}}.dump(-1, ' ', false, replace);
  json detail = json::array();
  for (const auto& field : error.fields) detail.push_back({{"loc", field.loc}, {"msg", field.msg}, {"type", field.type}});
  return json{{"detail", detail}}.dump(-1, ' ', false, replace);
}

Error error_from_response(int status, std::string_view body) {
  Error error{error_kind_for_status(status), "the agent answered HTTP " + std::to_string(status), {}};
  json parsed = json::parse(body, nullptr, false);
  if (!parsed.is_object() || !parsed.contains("detail")) return error;
  const json& detail = parsed["detail"];
  if (detail.is_string()) {
    error.message = detail.get<std::string>();
  } else if (detail.is_array()) {
    std::string message;
    for (const auto& item : detail) {
      FieldError field;
      if (item.contains("loc") && item["loc"].is_array())
        for (const auto& part : item["loc"]) field.loc.push_back(part.is_string() ? part.get<std::string>() : part.dump());
      field.msg = item.value("msg", "");
      field.type = item.value("type", "");
      std::string where;
      for (const auto& part : field.loc) where += (where.empty() ? "" : ".") + part;
      message += (message.empty() ? "" : "; ") + where + ": " + field.msg;
      error.fields.push_back(std::move(field));
    }
    error.message = message;
  }
  return error;
}

}  // namespace modbox
