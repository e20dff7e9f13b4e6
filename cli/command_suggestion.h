#pragma once
// An unknown command says so and names the nearest one, as git and kubectl do:
// `modbox provison` → unknown command "provison"; did you mean "provision"?

#include <CLI/CLI.hpp>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace modbox {

/// The Levenshtein distance between `a` and `b`: insertions, deletions and substitutions.
std::size_t edit_distance(std::string_view a, std::string_view b);

/// The message for a command line whose command `app` does not have, as the words after the
/// program name (`args`): the unknown word and the nearest command of that level, if one is near.
/// nullopt when every command word is known (the line is wrong in another way, or right).
std::optional<std::string> unknown_command_message(const CLI::App& app, const std::vector<std::string>& args);

}  // namespace modbox
