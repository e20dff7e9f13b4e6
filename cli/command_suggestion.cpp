#include "cli/command_suggestion.h"

#include <algorithm>
#include <numeric>

namespace modbox {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), std::size_t{0});
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

namespace {

/// The option `word` names for `command`, which takes its parents' options through fallthrough.
const CLI::Option* find_option(const CLI::App* command, const std::string& word) {
  std::string name = word.substr(0, word.find('='));
  for (; command != nullptr; command = command->get_parent())
    for (const CLI::Option* option : command->get_options())
      if (option->nonpositional() && option->check_name(name)) return option;
  return nullptr;
}

const CLI::App* find_subcommand(const CLI::App* command, const std::string& word) {
  for (const CLI::App* subcommand : command->get_subcommands({}))
    if (subcommand->check_name(word)) return subcommand;
  return nullptr;
}

/// The command of `command` nearest to `word`, when one is near enough to be what was meant: at
/// most two edits away (one for short names), or one that `word` begins.
std::optional<std::string> nearest_subcommand(const CLI::App* command, const std::string& word) {
  std::optional<std::string> nearest;
  std::size_t best = 0;
  for (const CLI::App* subcommand : command->get_subcommands({})) {
    std::vector<std::string> names = subcommand->get_aliases();
    names.insert(names.begin(), subcommand->get_name());
    for (const auto& name : names) {
      std::size_t distance = edit_distance(word, name);
      bool near = distance <= (name.size() <= 3 ? 1u : 2u) || (word.size() >= 2 && name.starts_with(word));
      if (near && (!nearest || distance < best)) {
        nearest = subcommand->get_name();
        best = distance;
      }
    }
  }
  return nearest;
}

}  // namespace

std::optional<std::string> unknown_command_message(const CLI::App& app, const std::vector<std::string>& args) {
  const CLI::App* command = &app;
  std::string path;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (word == "--") return std::nullopt;
    if (word.size() > 1 && word.front() == '-') {
      const CLI::Option* option = find_option(command, word);
      // A value in the next word: `-w ci`, `--workspace ci` (not `--workspace=ci`).
      if (option != nullptr && option->get_items_expected_max() > 0 && word.find('=') == std::string::npos) ++i;
      continue;
    }
    // Only a command that must be followed by one of its commands is told its word is unknown: the
    // others take arguments here (`modbox files TASK`).
    if (command->get_subcommands({}).empty() || command->get_require_subcommand_min() == 0) return std::nullopt;
    if (const CLI::App* subcommand = find_subcommand(command, word)) {
      path += subcommand->get_name() + " ";
      command = subcommand;
      continue;
    }
    std::string message = "unknown command \"" + path + word + "\"";
    if (auto nearest = nearest_subcommand(command, word))
      return message + "; did you mean \"" + path + *nearest + "\"?";
    std::string help = "modbox " + path + "--help";
    return message + "; see '" + help + "'";
  }
  return std::nullopt;
}

}  // namespace modbox
