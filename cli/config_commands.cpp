// modbox config get | set | unset | list: the settings of cli/settings.h, and where each comes from.

#include <cstdio>

#include "cli/cli.h"
#include "cli/table.h"

namespace modbox {

namespace {

/// The key argument checked: an unknown key is a usage error that lists the keys.
std::optional<int> refuse_unknown_key(const std::string& key) {
  if (setting_environment_name(key) != nullptr) return std::nullopt;
  print_error(unknown_setting_key(key));
  return exit_status::usage;
}

/// A note on standard error when the file's value for `key` is not the one in effect.
void note_override(const CliContext& context, const std::string& key) {
  const Setting& effective = context.settings.at(key);
  if (effective.origin != "default" && !effective.origin.starts_with("file "))
    std::fprintf(stderr, "modbox: note: %s overrides the config file's %s\n", effective.origin.c_str(), key.c_str());
}

Result<int> change_file(const CliContext& context, const std::string& key, const std::optional<std::string>& value) {
  auto file = load_config_file(config_file_path());
  if (!file) return std::unexpected(file.error());
  if (value)
    file->values[key] = *value;
  else
    file->values.erase(key);
  if (auto saved = save_config_file(*file); !saved) return std::unexpected(saved.error());
  if (!context.quiet && !context.json) {
    if (value)
      std::printf("%s set in %s\n", key.c_str(), file->path.c_str());
    else
      std::printf("%s removed from %s\n", key.c_str(), file->path.c_str());
  }
  note_override(context, key);
  return 0;
}

}  // namespace

void add_config_commands(CLI::App& app, CliContext& context) {
  auto* group = app.add_subcommand("config", "Read and write modbox's settings (~/.config/modbox/config.json)");
  group->require_subcommand(1);

  auto* list = group->add_subcommand("list", "Show each setting's value and where it comes from");
  list->alias("ls");
  list->callback([&context] {
    context.action = [&context]() -> Result<int> {
      auto settings = context.settings.all();
      if (context.json) {
        std::printf("%s\n", settings_to_json(settings, true).c_str());
        return 0;
      }
      if (context.quiet) {
        for (const auto& setting : settings)
          if (setting.value) std::printf("%s\n", setting.key.c_str());
        return 0;
      }
      std::vector<std::vector<std::string>> rows = {{"KEY", "VALUE", "ORIGIN"}};
      for (const auto& setting : settings) {
        std::string value =
            setting.value ? (setting.key == "api_token" ? masked_secret(*setting.value) : *setting.value) : "-";
        rows.push_back({setting.key, value, setting.origin});
      }
      std::printf("%s", format_columns(rows).c_str());
      return 0;
    };
  });

  auto key = std::make_shared<std::string>();
  auto value = std::make_shared<std::string>();

  auto* get = group->add_subcommand("get", "Print a setting's value (exit 1 when it has none)");
  get->add_option("key", *key, "api_url, api_token or workspace")->required();
  get->callback([&context, key] {
    context.action = [&context, key]() -> Result<int> {
      if (auto refused = refuse_unknown_key(*key)) return *refused;
      const Setting& setting = context.settings.at(*key);
      if (context.json) {
        std::printf("%s\n", settings_to_json({setting}, false).c_str());
        return setting.value ? 0 : 1;
      }
      if (!setting.value) return 1;
      std::printf("%s\n", setting.value->c_str());
      return 0;
    };
  });

  auto* set = group->add_subcommand("set", "Write a setting to the config file (mode 0600)");
  set->add_option("key", *key, "api_url, api_token or workspace")->required();
  set->add_option("value", *value, "Its value")->required();
  set->callback([&context, key, value] {
    context.action = [&context, key, value]() -> Result<int> {
      if (auto refused = refuse_unknown_key(*key)) return *refused;
      if (auto checked = check_setting_value(*key, *value); !checked) {
        print_error(checked.error());
        return exit_status::usage;
      }
      return change_file(context, *key, *value);
    };
  });

  auto* unset = group->add_subcommand("unset", "Remove a setting from the config file");
  unset->add_option("key", *key, "api_url, api_token or workspace")->required();
  unset->callback([&context, key] {
    context.action = [&context, key]() -> Result<int> {
      if (auto refused = refuse_unknown_key(*key)) return *refused;
      return change_file(context, *key, std::nullopt);
    };
  });
}

}  // namespace modbox
