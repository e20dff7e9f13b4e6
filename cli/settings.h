#pragma once
// The CLI's settings and where each comes from: a flag, then the environment (MODBOX_API_URL,
// MODBOX_API_TOKEN, MODBOX_WORKSPACE), then the config file (~/.config/modbox/config.json), then the
// default. `modbox config` reads and writes the file; every command resolves through here.

#include <array>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace modbox {

/// The keys of the config file, in the order `modbox config list` shows them.
inline constexpr std::array<const char*, 3> setting_keys = {"api_url", "api_token", "workspace"};

/// The environment variable that sets `key` ("MODBOX_API_URL"), or nullptr for a key that is not one.
const char* setting_environment_name(const std::string& key);

/// The error for a key that is not one of setting_keys: names them (a usage error, exit 2).
Error unknown_setting_key(const std::string& key);

/// Checks a value `modbox config set` is given: an api_url is http:// or https://; a workspace is
/// non-empty. A bad value is a validation error naming the key.
Result<void> check_setting_value(const std::string& key, const std::string& value);

/// $MODBOX_CONFIG, else $XDG_CONFIG_HOME/modbox/config.json, else ~/.config/modbox/config.json.
std::filesystem::path config_file_path();

/// The config file's keys and values. A missing file is an empty one; unknown keys are kept (so a
/// newer modbox's keys survive an older one's `config set`) but not used.
struct ConfigFile {
  std::filesystem::path path;
  std::map<std::string, std::string> values;
};

/// Reads `path`: a JSON object of strings. Anything else is an error naming the file.
Result<ConfigFile> load_config_file(const std::filesystem::path& path);

/// Writes `file` to its path atomically with mode 0600 (it may hold a token), creating its directory.
Result<void> save_config_file(const ConfigFile& file);

/// A setting's effective value and its origin: "--workspace", "env MODBOX_WORKSPACE",
/// "file PATH", or "default" (no value: the agent's unix socket, its token file, no workspace).
struct Setting {
  std::string key;
  std::optional<std::string> value;
  std::string origin;
};

struct Settings {
  Setting api_url;
  Setting api_token;
  Setting workspace;
  /// The one named `key` (one of setting_keys).
  const Setting& at(const std::string& key) const;
  std::vector<Setting> all() const { return {api_url, api_token, workspace}; }
};

/// Resolves each key: `flags` (key → value, given on the command line) first, then `environment`
/// (an empty variable counts as unset), then `file`, then the default.
Settings resolve_settings(const std::map<std::string, std::string>& flags,
                          const std::function<std::optional<std::string>(const char*)>& environment,
                          const ConfigFile& file);

/// The process's environment, as resolve_settings takes it.
std::optional<std::string> process_environment(const char* name);

/// `[{"key", "value", "origin"}...]` (value null when unset); the token masked when `mask_secret`.
std::string settings_to_json(const std::vector<Setting>& settings, bool mask_secret);

/// A token shown in a listing: its last 4 characters only.
std::string masked_secret(const std::string& secret);

}  // namespace modbox
