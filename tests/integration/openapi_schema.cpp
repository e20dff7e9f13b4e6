#include "tests/integration/openapi_schema.h"

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>

namespace modbox::test {

using nlohmann::json;

namespace {

bool has_type(const json& value, const std::string& type) {
  if (type == "null") return value.is_null();
  if (type == "string") return value.is_string();
  if (type == "integer") return value.is_number_integer();
  if (type == "number") return value.is_number();
  if (type == "boolean") return value.is_boolean();
  if (type == "object") return value.is_object();
  if (type == "array") return value.is_array();
  throw std::runtime_error("schema uses a type this checker does not know: " + type);
}

bool has_format(const std::string& text, const std::string& format) {
  static const std::regex uuid("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$");
  // RFC 3339 date-time, as JSON Schema's "date-time" means it.
  static const std::regex date_time(
      R"(^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$)");
  if (format == "uuid") return std::regex_match(text, uuid);
  if (format == "date-time") return std::regex_match(text, date_time);
  return true;  // other formats are annotations here
}

}  // namespace

std::filesystem::path seeds_dir() {
  if (const char* dir = std::getenv("MODBOX_SEEDS_DIR"); dir != nullptr && *dir != '\0') return dir;
  return MODBOX_SEEDS_DIR;
}

std::filesystem::path seed_file(const std::string& prefix) {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(seeds_dir(), error))
    if (entry.path().filename().string().starts_with(prefix)) return entry.path();
  throw std::runtime_error("no seed " + prefix + "* in " + seeds_dir().string() +
                           " (the seeds are expected in ../shared/seeds beside the checkout, or in $MODBOX_SEEDS_DIR)");
}

OpenApiSchemas OpenApiSchemas::from_seed(const std::filesystem::path& path) {
  std::ifstream file(path);
  if (!file) throw std::runtime_error("cannot read " + path.string());
  std::stringstream text;
  text << file.rdbuf();
  std::string content = text.str();
  auto start = content.find("```yaml\n");
  if (start == std::string::npos) throw std::runtime_error(path.string() + " has no ```yaml block");
  start += 8;
  auto end = content.find("\n```", start);
  OpenApiSchemas schemas;
  schemas.document_ = YAML::Load(content.substr(start, end - start));
  if (!schemas.document_["components"]["schemas"])
    throw std::runtime_error(path.string() + ": no components/schemas in its OpenAPI document");
  return schemas;
}

YAML::Node OpenApiSchemas::schema(const std::string& name) const {
  YAML::Node node = document_["components"]["schemas"][name];
  if (!node) throw std::runtime_error("no schema " + name + " in the OpenAPI document");
  return node;
}

std::vector<std::string> OpenApiSchemas::required(const std::string& name) const {
  std::vector<std::string> names;
  for (const auto& item : schema(name)["required"]) names.push_back(item.as<std::string>());
  return names;
}

std::vector<std::string> OpenApiSchemas::check(const json& value, const std::string& name) const {
  std::vector<std::string> problems;
  check_node(value, schema(name), name, problems);
  return problems;
}

void OpenApiSchemas::check_node(const json& value, const YAML::Node& node, const std::string& where,
                                std::vector<std::string>& problems) const {
  if (node["$ref"]) {
    std::string reference = node["$ref"].as<std::string>();
    const std::string prefix = "#/components/schemas/";
    if (!reference.starts_with(prefix)) throw std::runtime_error("unsupported $ref " + reference);
    check_node(value, schema(reference.substr(prefix.size())), where, problems);
    return;
  }
  if (node["oneOf"]) {
    int matches = 0;
    for (const auto& option : node["oneOf"]) {
      std::vector<std::string> option_problems;
      check_node(value, option, where, option_problems);
      if (option_problems.empty()) ++matches;
    }
    if (matches != 1)
      problems.push_back(where + ": matches " + std::to_string(matches) + " of the oneOf schemas instead of one: " +
                         value.dump());
    return;
  }
  if (node["type"]) {
    std::vector<std::string> types;
    if (node["type"].IsSequence())
      for (const auto& type : node["type"]) types.push_back(type.as<std::string>());
    else
      types.push_back(node["type"].as<std::string>());
    bool matched = false;
    for (const auto& type : types) matched = matched || has_type(value, type);
    if (!matched) {
      std::string expected;
      for (const auto& type : types) expected += (expected.empty() ? "" : " or ") + type;
      problems.push_back(where + ": expected " + expected + ", got " + value.dump());
      return;
    }
  }
  if (node["format"] && value.is_string() && !has_format(value.get<std::string>(), node["format"].as<std::string>()))
    problems.push_back(where + ": '" + value.get<std::string>() + "' is not a " + node["format"].as<std::string>());
  if (value.is_object()) {
    for (const auto& item : node["required"]) {
      std::string field = item.as<std::string>();
      if (!value.contains(field)) problems.push_back(where + ": required property '" + field + "' is missing");
    }
    for (const auto& property : node["properties"]) {
      std::string field = property.first.as<std::string>();
      if (value.contains(field)) check_node(value.at(field), property.second, where + "." + field, problems);
    }
  }
  if (value.is_array() && node["items"])
    for (std::size_t i = 0; i < value.size(); ++i)
      check_node(value[i], node["items"], where + "[" + std::to_string(i) + "]", problems);
}

}  // namespace modbox::test
