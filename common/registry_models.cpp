#include "common/registry_models.h"

#include <nlohmann/json.hpp>

#include "common/json_support.h"

#include "common/body_reader.h"
#include "common/image_models.h"

namespace modbox {

using nlohmann::json;
using json_support::decode;
using json_support::decode_list;
using json_support::optional_field;
using json_support::optional_json;

namespace {

json registry_api_object(const Registry& registry) {
  return {{"id", registry.id},
          {"name", registry.name},
          {"server", registry.server},
          {"username", optional_json(registry.username)},
          {"auth_type", registry.auth_type()},
          {"insecure", registry.insecure},
          {"workspace_id", optional_json(registry.workspace_id)},
          {"created_at", format_timestamp(registry.created_at)},
          {"updated_at", format_timestamp(registry.updated_at)}};
}

Registry registry_from_api_object(const json& object) {
  Registry registry;
  registry.id = object.at("id").get<std::string>();
  registry.name = object.at("name").get<std::string>();
  registry.server = object.at("server").get<std::string>();
  registry.username = optional_field<std::string>(object, "username");
  registry.insecure = object.value("insecure", false);
  registry.workspace_id = optional_field<std::string>(object, "workspace_id");
  if (auto created = parse_timestamp(object.at("created_at").get<std::string>())) registry.created_at = *created;
  if (auto updated = parse_timestamp(object.at("updated_at").get<std::string>())) registry.updated_at = *updated;
  return registry;
}

/// A secret field: non-empty, bounded, no NUL or newline (it ends up in an HTTP header, base64-encoded).
std::optional<std::string> read_secret(BodyReader& reader, const char* name) {
  auto secret = reader.string(name, false);
  if (!secret) return std::nullopt;
  if (secret->empty()) {
    reader.add({"body", name}, "String should have at least 1 character", "string_too_short");
    return std::nullopt;
  }
  if (secret->size() > limits::registry_secret_max_bytes) {
    reader.add({"body", name}, "String should have at most 4096 characters", "string_too_long");
    return std::nullopt;
  }
  if (secret->find_first_of(std::string("\0\r\n", 3)) != std::string::npos) {
    reader.add({"body", name}, "Value error, must not contain NUL or line breaks", "value_error");
    return std::nullopt;
  }
  return secret;
}

std::string normalize_server(std::string server) {
  for (const char* scheme : {"https://", "http://"})
    if (server.starts_with(scheme)) server = server.substr(std::string_view(scheme).size());
  while (server.ends_with('/')) server.pop_back();
  if (server == "index.docker.io" || server == "registry-1.docker.io") server = "docker.io";
  return server;
}

}  // namespace

Result<RegistryCreateRequest> parse_registry_create_request(std::string_view body) {
  auto reader = BodyReader::parse(body);
  if (!reader) return std::unexpected(reader.error());
  RegistryCreateRequest request;
  if (auto name = reader->string("name", true)) {
    if (name->empty() || name->size() > 255)
      reader->add({"body", "name"}, "String should have 1 to 255 characters", "string_too_short");
    else
      request.name = *name;
  }
  if (auto server = reader->string("server", true)) {
    request.server = normalize_server(*server);
    if (!is_registry_host(request.server))
      reader->add({"body", "server"}, "Value error, give the registry as host[:port] (ghcr.io, 127.0.0.1:5000)",
                  "value_error");
  }
  if (auto username = reader->string("username", false)) {
    if (username->empty() || username->size() > 255 || username->find_first_of(std::string("\0\r\n:", 4)) != std::string::npos)
      reader->add({"body", "username"}, "Value error, 1 to 255 characters, without ':' or line breaks", "value_error");
    else
      request.username = *username;
  }
  bool password_given = reader->has("password") && !reader->is_null("password");
  bool token_given = reader->has("token") && !reader->is_null("token");
  request.password = read_secret(*reader, "password");
  request.token = read_secret(*reader, "token");
  if (password_given && token_given)
    reader->add({"body", "token"}, "Value error, give a password or a token, not both", "value_error");
  else if (!password_given && !token_given)
    reader->add({"body", "password"}, "Field required: give a password (with username) or a token", "missing");
  else if (password_given && !reader->has("username"))
    reader->add({"body", "username"}, "Field required with a password", "missing");
  request.insecure = reader->boolean("insecure", false).value_or(false);
  return reader->finish(std::move(request));
}

bool registry_skips_tls_verify(const Registry& registry) {
  if (registry.insecure) return true;
  std::string host = registry.server;
  if (host.starts_with("[::1]")) return true;
  host = host.substr(0, host.find(':'));
  return host == "localhost" || host.starts_with("127.");
}

std::string registry_to_json(const Registry& registry) { return registry_api_object(registry).dump(); }

std::string registries_to_json(const std::vector<Registry>& registries) {
  json array = json::array();
  for (const auto& registry : registries) array.push_back(registry_api_object(registry));
  return array.dump();
}

std::string registry_record_to_json(const Registry& registry) {
  json object = registry_api_object(registry);
  object.erase("auth_type");
  object["password"] = optional_json(registry.password);
  object["token"] = optional_json(registry.token);
  return object.dump(2);
}

Result<Registry> registry_record_from_json(std::string_view text) {
  return decode<Registry>(text, "registry record", [](const json& object) {
    Registry registry = registry_from_api_object(object);
    registry.password = optional_field<std::string>(object, "password");
    registry.token = optional_field<std::string>(object, "token");
    return registry;
  });
}

Result<Registry> registry_from_json(std::string_view text) {
  return decode<Registry>(text, "registry", [](const json& object) { return registry_from_api_object(object); });
}

Result<std::vector<Registry>> registries_from_json(std::string_view text) {
  return decode_list<Registry>(text, "registry list", registry_from_api_object);
}

std::string registry_create_request_to_json(const RegistryCreateRequest& request) {
  json object = {{"name", request.name}, {"server", request.server}, {"insecure", request.insecure}};
  if (request.username) object["username"] = *request.username;
  if (request.password) object["password"] = *request.password;
  if (request.token) object["token"] = *request.token;
  return object.dump();
}

}  // namespace modbox
