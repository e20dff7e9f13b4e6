#include "common/image_models.h"

#include <cctype>
#include <nlohmann/json.hpp>
#include <string>

#include "common/body_reader.h"
#include "common/json_support.h"

namespace modbox {

using json_support::decode;
using json_support::decode_list;
using json_support::optional_field;
using json_support::optional_json;
using nlohmann::json;

namespace {

bool is_lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool is_alnum(char c) {
  return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}
bool is_word(char c) {
  return is_alnum(c) || c == '_';
}

/// A path component: [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
bool is_path_component(std::string_view part) {
  if (part.empty() || !is_lower_alnum(part.front()) || !is_lower_alnum(part.back())) return false;
  std::size_t i = 0;
  while (i < part.size()) {
    if (is_lower_alnum(part[i])) {
      ++i;
      continue;
    }
    std::size_t start = i;
    while (i < part.size() && !is_lower_alnum(part[i])) ++i;
    std::string_view separator = part.substr(start, i - start);
    bool dashes = separator.find_first_not_of('-') == std::string_view::npos;
    if (!(separator == "." || separator == "_" || separator == "__" || dashes)) return false;
  }
  return true;
}

/// host[:port], the host being DNS labels separated by dots, or an IPv6 address in brackets.
bool valid_registry_host(std::string_view domain) {
  std::string_view host = domain;
  std::string_view port;
  if (host.starts_with('[')) {
    auto close = host.find(']');
    if (close == std::string_view::npos || close < 3) return false;
    for (char c : host.substr(1, close - 1))
      if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == ':')) return false;
    std::string_view rest = host.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return false;
    port = rest.empty() ? rest : rest.substr(1);
    if (!rest.empty() && port.empty()) return false;
    host = {};
  } else if (auto colon = host.find(':'); colon != std::string_view::npos) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
    if (port.empty()) return false;
  }
  if (!port.empty()) {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos) return false;
    if (std::stoi(std::string(port)) > 65535) return false;
  }
  if (domain.starts_with('[')) return true;
  if (host.empty()) return false;
  std::size_t start = 0;
  while (start <= host.size()) {
    std::size_t dot = host.find('.', start);
    if (dot == std::string_view::npos) dot = host.size();
    std::string_view label = host.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || !is_alnum(label.front()) || !is_alnum(label.back())) return false;
    for (char c : label)
      if (!is_alnum(c) && c != '-') return false;
    start = dot + 1;
  }
  return true;
}

/// Docker's rule: the first component names a registry when it has a dot or a port, or is localhost.
bool names_registry(std::string_view first_component) {
  return first_component.find_first_of(".:") != std::string_view::npos || first_component == "localhost" ||
         first_component.starts_with('[');
}

FieldError reference_error(std::vector<std::string> loc, const std::string& why) {
  return FieldError{std::move(loc), "Value error, not a valid image repository: " + why, "value_error"};
}

json image_api_object(const SandboxImage& image) {
  return {{"id", image.id},
          {"name", image.name},
          {"image", image.image},
          {"tag", image.tag},
          {"description", optional_json(image.description)},
          {"enabled", image.enabled},
          {"is_default", image.is_default},
          {"memory_mb", image.memory_mb},
          {"readiness_port", optional_json(image.readiness_port)},
          {"ttl_seconds", optional_json(image.ttl_seconds)},
          {"workspace_id", optional_json(image.workspace_id)},
          {"registry_id", optional_json(image.registry_id)},
          {"registry_name", optional_json(image.registry_name)},
          {"created_at", format_timestamp(image.created_at)},
          {"updated_at", format_timestamp(image.updated_at)}};
}

SandboxImage image_from_api_object(const json& object) {
  SandboxImage image;
  image.id = object.at("id").get<std::string>();
  image.name = object.at("name").get<std::string>();
  image.image = object.at("image").get<std::string>();
  image.tag = object.at("tag").get<std::string>();
  image.description = optional_field<std::string>(object, "description");
  image.enabled = object.at("enabled").get<bool>();
  image.is_default = object.at("is_default").get<bool>();
  image.memory_mb = object.at("memory_mb").get<int>();
  image.readiness_port = optional_field<int>(object, "readiness_port");
  image.ttl_seconds = optional_field<int>(object, "ttl_seconds");
  image.workspace_id = optional_field<std::string>(object, "workspace_id");
  image.registry_id = optional_field<std::string>(object, "registry_id");
  image.registry_name = optional_field<std::string>(object, "registry_name");
  if (auto created = parse_timestamp(object.at("created_at").get<std::string>())) image.created_at = *created;
  if (auto updated = parse_timestamp(object.at("updated_at").get<std::string>())) image.updated_at = *updated;
  return image;
}

/// A field whose schema does not allow null: null is a type error, as pydantic reports it.
void refuse_null(BodyReader& reader, const char* name, const char* expected, const char* type) {
  if (reader.is_null(name)) reader.add({"body", name}, std::string("Input should be a valid ") + expected, type);
}

std::optional<std::string> read_name(BodyReader& reader, bool required) {
  refuse_null(reader, "name", "string", "string_type");
  auto name = reader.string("name", required);
  if (!name) return std::nullopt;
  if (name->empty()) {
    reader.add({"body", "name"}, "String should have at least 1 character", "string_too_short");
    return std::nullopt;
  }
  if (name->size() > limits::image_name_max_length) {
    reader.add({"body", "name"}, "String should have at most 255 characters", "string_too_long");
    return std::nullopt;
  }
  return name;
}

std::optional<std::string> read_repository(BodyReader& reader, bool required) {
  refuse_null(reader, "image", "string", "string_type");
  auto image = reader.string("image", required);
  if (!image) return std::nullopt;
  if (auto problem = check_image_repository(*image, {"body", "image"})) {
    reader.add(problem->loc, problem->msg, problem->type);
    return std::nullopt;
  }
  return image;
}

std::optional<std::string> read_tag(BodyReader& reader) {
  refuse_null(reader, "tag", "string", "string_type");
  auto tag = reader.string("tag", false);
  if (!tag) return std::nullopt;
  if (auto problem = check_image_tag(*tag, {"body", "tag"})) {
    reader.add(problem->loc, problem->msg, problem->type);
    return std::nullopt;
  }
  return tag;
}

std::optional<std::string> read_description(BodyReader& reader) {
  auto description = reader.string("description", false);
  if (description && description->size() > limits::description_max_length) {
    reader.add({"body", "description"}, "String should have at most 4096 characters", "string_too_long");
    return std::nullopt;
  }
  return description;
}

std::optional<std::string> read_registry_id(BodyReader& reader) {
  auto registry_id = reader.string("registry_id", false);
  if (!registry_id) return std::nullopt;
  if (auto problem = check_uuid(*registry_id, {"body", "registry_id"})) {
    reader.add(problem->loc, problem->msg, problem->type);
    return std::nullopt;
  }
  return registry_id;
}

std::optional<int> read_memory(BodyReader& reader) {
  refuse_null(reader, "memory_mb", "integer", "int_type");
  return reader.integer("memory_mb", false, limits::image_memory_mb_min, limits::image_memory_mb_max);
}

std::optional<int> read_port(BodyReader& reader) {
  return reader.integer("readiness_port", false, limits::port_min, limits::port_max);
}

std::optional<int> read_ttl(BodyReader& reader) {
  return reader.integer("ttl_seconds", false, limits::image_ttl_seconds_min, limits::image_ttl_seconds_max);
}

std::optional<bool> read_flag(BodyReader& reader, const char* name) {
  refuse_null(reader, name, "boolean", "bool_type");
  return reader.boolean(name, false);
}

/// For a nullable field of an update: null clears it, a value that passed validation sets it.
template <class T>
Patch<T> patch_of(const BodyReader& reader, const char* name, const std::optional<T>& value) {
  if (reader.is_null(name)) return std::optional<T>{};
  if (value) return value;
  return std::nullopt;
}

}  // namespace

std::optional<FieldError> check_image_repository(std::string_view image, std::vector<std::string> loc) {
  if (image.empty()) return FieldError{loc, "String should have at least 1 character", "string_too_short"};
  if (image.size() > limits::image_reference_max_length)
    return FieldError{loc, "String should have at most 255 characters", "string_too_long"};
  if (image.find('@') != std::string_view::npos)
    return reference_error(loc, "a digest (@sha256:...) cannot be registered; give a tag in `tag`");
  if (image.find("://") != std::string_view::npos)
    return reference_error(loc, "give the repository without a scheme (registry.example.com/team/app)");
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (start <= image.size()) {
    std::size_t slash = image.find('/', start);
    if (slash == std::string_view::npos) slash = image.size();
    parts.push_back(image.substr(start, slash - start));
    start = slash + 1;
  }
  std::size_t first_path = 0;
  if (parts.size() > 1 && names_registry(parts.front())) {
    if (!valid_registry_host(parts.front()))
      return reference_error(loc, "'" + std::string(parts.front()) + "' is not a valid registry host[:port]");
    first_path = 1;
  }
  if (parts.back().find(':') != std::string_view::npos)
    return reference_error(loc, "the tag goes in `tag`, not in `image`");
  for (std::size_t i = first_path; i < parts.size(); ++i)
    if (!is_path_component(parts[i]))
      return reference_error(loc, "path component '" + std::string(parts[i]) +
                                      "' must be lower-case letters and digits, separated by '.', '_', '__' or '-'");
  return std::nullopt;
}

std::optional<FieldError> check_image_tag(std::string_view tag, std::vector<std::string> loc) {
  bool valid = !tag.empty() && tag.size() <= limits::image_tag_max_length && is_word(tag.front());
  for (char c : tag) valid = valid && (is_word(c) || c == '.' || c == '-');
  if (valid) return std::nullopt;
  return FieldError{std::move(loc), "String should match pattern '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'",
                    "string_pattern_mismatch"};
}

bool is_uuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? text[i] != '-' : !std::isxdigit(static_cast<unsigned char>(text[i]))) return false;
  }
  return true;
}

std::optional<FieldError> check_uuid(std::string_view text, std::vector<std::string> loc) {
  if (is_uuid(text)) return std::nullopt;
  return FieldError{std::move(loc), "Input should be a valid UUID", "uuid_parsing"};
}

bool is_registry_host(std::string_view host_and_port) {
  return valid_registry_host(host_and_port);
}

std::string registry_host_of(std::string_view image) {
  auto slash = image.find('/');
  if (slash == std::string_view::npos || !names_registry(image.substr(0, slash))) return "docker.io";
  std::string host(image.substr(0, slash));
  if (host == "index.docker.io" || host == "registry-1.docker.io") return "docker.io";
  return host;
}

std::string image_reference(const SandboxImage& image) {
  if (image.builtin) return "localhost/" + image.image + ":" + image.tag;
  auto slash = image.image.find('/');
  bool qualified = slash != std::string::npos && names_registry(std::string_view(image.image).substr(0, slash));
  if (qualified) return image.image + ":" + image.tag;
  // Docker's short names: `python` is docker.io/library/python, `org/app` is docker.io/org/app.
  return "docker.io/" + std::string(slash == std::string::npos ? "library/" : "") + image.image + ":" + image.tag;
}

std::string repository_component(std::string_view name) {
  std::string slug;
  for (char c : name) {
    char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if ((lower >= 'a' && lower <= 'z') || (lower >= '0' && lower <= '9'))
      slug += lower;
    else if (!slug.empty() && slug.back() != '-')
      slug += '-';
    if (slug.size() >= 64) break;
  }
  while (!slug.empty() && slug.back() == '-') slug.pop_back();
  return slug;
}

namespace {

/// The fields a registration has whether it names an image or builds one.
void read_registration_fields(BodyReader& reader, ImageCreateRequest& request) {
  request.description = read_description(reader);
  request.enabled = read_flag(reader, "enabled").value_or(true);
  request.is_default = read_flag(reader, "is_default").value_or(false);
  request.memory_mb = read_memory(reader).value_or(limits::image_memory_mb_default);
  request.readiness_port = read_port(reader);
  request.ttl_seconds = read_ttl(reader);
}

}  // namespace

Result<ImageCreateRequest> parse_image_create_request(std::string_view body) {
  auto reader = BodyReader::parse(body);
  if (!reader) return std::unexpected(reader.error());
  ImageCreateRequest request;
  request.name = read_name(*reader, true).value_or("");
  request.image = read_repository(*reader, true).value_or("");
  request.tag = read_tag(*reader).value_or("latest");
  read_registration_fields(*reader, request);
  request.registry_id = read_registry_id(*reader);
  return reader->finish(std::move(request));
}

Result<ImageCreateRequest> parse_image_build_fields(std::string_view body) {
  auto reader = BodyReader::parse(body);
  if (!reader) return std::unexpected(reader.error());
  ImageCreateRequest request;
  request.name = read_name(*reader, true).value_or("");
  read_registration_fields(*reader, request);
  for (const char* field : {"image", "tag", "registry_id"})
    if (reader->value(field) != nullptr)
      reader->add({"body", field}, std::string("Value error, the build sets ") + field + ": leave it out",
                  "value_error");
  return reader->finish(std::move(request));
}

std::string image_build_fields_to_json(const ImageCreateRequest& request) {
  json object = json::parse(image_create_request_to_json(request));
  for (const char* field : {"image", "tag", "registry_id"}) object.erase(field);
  return object.dump();
}

std::string build_output_event_data(std::string_view line) {
  return json{{"line", std::string(line)}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::string> build_output_line(std::string_view data) {
  json parsed = json::parse(data, nullptr, false);
  if (!parsed.is_object() || !parsed.contains("line") || !parsed["line"].is_string())
    return fail(ErrorKind::internal, "the agent sent a build output event without a line");
  return parsed["line"].get<std::string>();
}

std::string build_error_event_data(const Error& error) {
  json object = json::parse(error_to_json(error));
  object["status"] = http_status(error.kind);
  return object.dump(-1, ' ', false, json::error_handler_t::replace);
}

Error build_error_from_event(std::string_view data) {
  json parsed = json::parse(data, nullptr, false);
  int status = parsed.is_object() && parsed.contains("status") && parsed["status"].is_number_integer()
                   ? parsed["status"].get<int>()
                   : 500;
  return error_from_response(status, data);
}

Result<SnapshotRequest> parse_snapshot_request(std::string_view body) {
  auto reader = BodyReader::parse(body);
  if (!reader) return std::unexpected(reader.error());
  SnapshotRequest request;
  if (auto task_id = reader->string("task_id", true)) {
    if (auto problem = check_task_id(*task_id, {"body", "task_id"}))
      reader->add(problem->loc, problem->msg, problem->type);
    request.task_id = *task_id;
  }
  request.name = read_name(*reader, true).value_or("");
  return reader->finish(std::move(request));
}

Result<ImageUpdateRequest> parse_image_update_request(std::string_view body) {
  auto reader = BodyReader::parse(body);
  if (!reader) return std::unexpected(reader.error());
  ImageUpdateRequest request;
  request.name = read_name(*reader, false);
  request.image = read_repository(*reader, false);
  request.tag = read_tag(*reader);
  request.description = patch_of(*reader, "description", read_description(*reader));
  request.enabled = read_flag(*reader, "enabled");
  request.is_default = read_flag(*reader, "is_default");
  request.memory_mb = read_memory(*reader);
  request.readiness_port = patch_of(*reader, "readiness_port", read_port(*reader));
  request.ttl_seconds = patch_of(*reader, "ttl_seconds", read_ttl(*reader));
  request.registry_id = patch_of(*reader, "registry_id", read_registry_id(*reader));
  return reader->finish(std::move(request));
}

Result<bool> parse_enabled_only_query(std::string_view value) {
  if (auto parsed = parse_query_bool(value)) return *parsed;
  return fail_validation(
      {{{"query", "enabled_only"}, "Input should be a valid boolean, unable to interpret input", "bool_parsing"}});
}

std::string image_to_json(const SandboxImage& image) {
  return image_api_object(image).dump();
}

std::string images_to_json(const std::vector<SandboxImage>& images) {
  json array = json::array();
  for (const auto& image : images) array.push_back(image_api_object(image));
  return array.dump();
}

std::string image_record_to_json(const SandboxImage& image) {
  json object = image_api_object(image);
  object.erase("registry_name");  // the registry's current name is looked up when answering
  object["builtin"] = image.builtin;
  return object.dump(2);
}

Result<SandboxImage> image_record_from_json(std::string_view text) {
  return decode<SandboxImage>(text, "image record", [](const json& object) {
    SandboxImage image = image_from_api_object(object);
    image.registry_name.reset();
    image.builtin = object.value("builtin", false);
    return image;
  });
}

Result<SandboxImage> image_from_json(std::string_view text) {
  return decode<SandboxImage>(text, "image", [](const json& object) { return image_from_api_object(object); });
}

Result<std::vector<SandboxImage>> images_from_json(std::string_view text) {
  return decode_list<SandboxImage>(text, "image list", image_from_api_object);
}

std::string image_create_request_to_json(const ImageCreateRequest& request) {
  json object = {{"name", request.name},       {"image", request.image},           {"tag", request.tag},
                 {"enabled", request.enabled}, {"is_default", request.is_default}, {"memory_mb", request.memory_mb}};
  if (request.description) object["description"] = *request.description;
  if (request.readiness_port) object["readiness_port"] = *request.readiness_port;
  if (request.ttl_seconds) object["ttl_seconds"] = *request.ttl_seconds;
  if (request.registry_id) object["registry_id"] = *request.registry_id;
  return object.dump();
}

namespace {
template <class T>
void put_patch(json& object, const char* name, const Patch<T>& patch) {
  if (patch) object[name] = *patch ? json(**patch) : json(nullptr);
}
}  // namespace

std::string snapshot_request_to_json(const SnapshotRequest& request) {
  return json{{"task_id", request.task_id}, {"name", request.name}}.dump();
}

std::string image_update_request_to_json(const ImageUpdateRequest& request) {
  json object = json::object();
  if (request.name) object["name"] = *request.name;
  if (request.image) object["image"] = *request.image;
  if (request.tag) object["tag"] = *request.tag;
  put_patch(object, "description", request.description);
  if (request.enabled) object["enabled"] = *request.enabled;
  if (request.is_default) object["is_default"] = *request.is_default;
  if (request.memory_mb) object["memory_mb"] = *request.memory_mb;
  put_patch(object, "readiness_port", request.readiness_port);
  put_patch(object, "ttl_seconds", request.ttl_seconds);
  put_patch(object, "registry_id", request.registry_id);
  return object.dump();
}

}  // namespace modbox
