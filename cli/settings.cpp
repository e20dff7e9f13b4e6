#include "cli/settings.h"

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "common/system.h"

namespace modbox {

namespace {
using nlohmann::json;

std::string keys_sentence() {
  std::string keys;
  for (const char* key : setting_keys) keys += std::string(keys.empty() ? "" : ", ") + key;
  return keys;
}
}  // namespace

const char* setting_environment_name(const std::string& key) {
  if (key == "api_url") return "MODBOX_API_URL";
  if (key == "api_token") return "MODBOX_API_TOKEN";
  if (key == "workspace") return "MODBOX_WORKSPACE";
  return nullptr;
}

Error unknown_setting_key(const std::string& key) {
  return Error{ErrorKind::bad_request, "unknown key '" + key + "'; the keys are: " + keys_sentence(), {}};
}

Result<void> check_setting_value(const std::string& key, const std::string& value) {
  if (setting_environment_name(key) == nullptr) return std::unexpected(unknown_setting_key(key));
  auto invalid = [&](const std::string& message) {
    return fail_validation({FieldError{{"config", key}, message, "value_error"}});
  };
  if (value.empty()) return invalid("must not be empty (`modbox config unset " + key + "` removes it)");
  if (key == "api_url" && !value.starts_with("http://") && !value.starts_with("https://"))
    return invalid("must be an http:// or https:// URL, as `modbox agent env` prints: " + value);
  if (value.find_first_of("\r\n") != std::string::npos) return invalid("must be one line");
  return {};
}

std::optional<std::string> process_environment(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

std::filesystem::path config_file_path() {
  if (auto explicit_path = process_environment("MODBOX_CONFIG")) return *explicit_path;
  if (auto config_home = process_environment("XDG_CONFIG_HOME"))
    return std::filesystem::path(*config_home) / "modbox/config.json";
  auto home = process_environment("HOME");
  return std::filesystem::path(home.value_or("/")) / ".config/modbox/config.json";
}

Result<ConfigFile> load_config_file(const std::filesystem::path& path) {
  ConfigFile file{path, {}};
  auto text = read_file(path, 1 << 20);
  if (!text) {
    if (text.error().kind == ErrorKind::not_found) return file;
    return std::unexpected(text.error());
  }
  auto broken = [&](const std::string& why) {
    return fail(ErrorKind::bad_request,
                path.string() + " " + why + ": fix it, or remove it and use `modbox config set`");
  };
  json parsed = json::parse(*text, nullptr, false);
  if (parsed.is_discarded()) return broken("is not valid JSON");
  if (!parsed.is_object()) return broken("is not a JSON object");
  for (const auto& [key, value] : parsed.items()) {
    if (!value.is_string()) return broken("has a value that is not a string at \"" + key + "\"");
    file.values[key] = value.get<std::string>();
  }
  return file;
}

Result<void> save_config_file(const ConfigFile& file) {
  json object = json::object();
  for (const auto& [key, value] : file.values) object[key] = value;
  if (auto made = make_directories(file.path.parent_path().empty() ? "." : file.path.parent_path(), 0700); !made)
    return std::unexpected(made.error());
  return write_file_atomic(file.path, object.dump(2) + "\n", 0600);
}

const Setting& Settings::at(const std::string& key) const {
  if (key == "api_url") return api_url;
  if (key == "api_token") return api_token;
  return workspace;
}

Settings resolve_settings(const std::map<std::string, std::string>& flags,
                          const std::function<std::optional<std::string>(const char*)>& environment,
                          const ConfigFile& file) {
  auto resolve = [&](const std::string& key) {
    if (auto flag = flags.find(key); flag != flags.end() && !flag->second.empty())
      return Setting{key, flag->second, "--" + std::string(key == "api_url" ? "api-url" : key)};
    const char* variable = setting_environment_name(key);
    if (auto value = environment(variable); value && !value->empty())
      return Setting{key, *value, std::string("env ") + variable};
    if (auto stored = file.values.find(key); stored != file.values.end() && !stored->second.empty())
      return Setting{key, stored->second, "file " + file.path.string()};
    return Setting{key, std::nullopt, "default"};
  };
  return Settings{resolve("api_url"), resolve("api_token"), resolve("workspace")};
}

std::string settings_to_json(const std::vector<Setting>& settings, bool mask_secret) {
  json list = json::array();
  for (const auto& setting : settings) {
    json value = nullptr;
    if (setting.value)
      value = mask_secret && setting.key == "api_token" ? masked_secret(*setting.value) : *setting.value;
    list.push_back({{"key", setting.key}, {"value", value}, {"origin", setting.origin}});
  }
  return list.dump();
}

std::string masked_secret(const std::string& secret) {
  if (secret.size() <= 8) return std::string(secret.size(), '*');
  return "****" + secret.substr(secret.size() - 4);
}

}  // namespace modbox
