// modbox completion bash|zsh: completion scripts written from the command tree.

#include "cli/completion.h"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <memory>
#include <string_view>

#include "cli/cli.h"

namespace modbox {

namespace {

std::string join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string joined;
  for (const auto& part : parts) joined += (joined.empty() ? "" : std::string(separator)) + part;
  return joined;
}

/// The values of an IsMember check, which CLI11 appends to the type name as ":{a,b,c}".
std::vector<std::string> choices_of(const CLI::Option& option) {
  std::string type = option.get_type_name();
  auto open = type.find(":{");
  auto close = type.find('}', open);
  if (open == std::string::npos || close == std::string::npos) return {};
  std::vector<std::string> choices;
  std::string list = type.substr(open + 2, close - open - 2);
  for (std::size_t start = 0; start < list.size();) {
    auto comma = std::min(list.find(',', start), list.size());
    if (comma > start) choices.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return choices;
}

OptionSpec describe_option(const CLI::Option& option) {
  OptionSpec spec;
  for (const auto& name : option.get_lnames()) spec.names.push_back("--" + name);
  for (const auto& name : option.get_snames()) spec.names.push_back("-" + name);
  spec.description = option.get_description();
  spec.takes_value = option.get_items_expected_max() > 0;
  spec.repeatable = spec.takes_value && option.get_items_expected_max() > 1;
  spec.choices = choices_of(option);
  return spec;
}

PositionalSpec describe_positional(const CLI::Option& option) {
  std::string type = option.get_type_name();
  std::string sandbox = sandbox_type_name;
  return PositionalSpec{.name = option.get_name(true),
                        .repeats = option.get_items_expected_max() > 1,
                        .names_sandbox = type == sandbox || type.starts_with(sandbox + ":"),
                        .choices = choices_of(option)};
}

bool share_a_name(const OptionSpec& first, const OptionSpec& second) {
  return std::ranges::any_of(first.names, [&](const std::string& name) {
    return std::ranges::find(second.names, name) != second.names.end();
  });
}

CommandSpec describe_command(const CLI::App& app, std::vector<std::string> path,
                             const std::vector<OptionSpec>& parent_options) {
  CommandSpec spec{.path = std::move(path),
                   .aliases = app.get_aliases(),
                   .description = app.get_description(),
                   .hidden = app.get_group().empty()};
  for (const CLI::Option* option : app.get_options()) {
    if (option->nonpositional())
      spec.options.push_back(describe_option(*option));
    else if (option->get_positional())
      spec.positionals.push_back(describe_positional(*option));
  }
  // With fallthrough, an option the command does not know is parsed by its parent.
  if (app.get_fallthrough())
    for (const auto& inherited : parent_options)
      if (std::ranges::none_of(spec.options, [&](const OptionSpec& own) { return share_a_name(own, inherited); }))
        spec.options.push_back(inherited);
  for (const CLI::App* subcommand : app.get_subcommands({})) {
    auto subcommand_path = spec.path;
    subcommand_path.push_back(subcommand->get_name());
    spec.subcommands.push_back(describe_command(*subcommand, std::move(subcommand_path), spec.options));
  }
  return spec;
}

/// Every command of the tree, parents before their subcommands.
void collect_commands(const CommandSpec& command, std::vector<const CommandSpec*>& commands) {
  commands.push_back(&command);
  for (const auto& subcommand : command.subcommands) collect_commands(subcommand, commands);
}

std::vector<std::string> visible_subcommand_names(const CommandSpec& command) {
  std::vector<std::string> names;
  for (const auto& subcommand : command.subcommands)
    if (!subcommand.hidden) names.push_back(subcommand.path.back());
  return names;
}

/// The names an option is offered under: its long names (`-q` and `--quiet` are one choice),
/// or its short ones when it has no long name.
std::vector<std::string> offered_names(const OptionSpec& option) {
  std::vector<std::string> names;
  for (const auto& name : option.names)
    if (name.starts_with("--")) names.push_back(name);
  return names.empty() ? option.names : names;
}

/// `text` as one shell word, in single quotes unless it needs none.
std::string shell_quote(std::string_view text) {
  static constexpr std::string_view plain = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@%+=:,./_-";
  if (!text.empty() && text.find_first_not_of(plain) == std::string_view::npos) return std::string(text);
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string path_of(const CommandSpec& command) {
  return join(command.path, " ");
}

// ---- bash ----

constexpr std::string_view bash_prologue = R"sh(# bash completion for modbox                  -*- shell-script -*-
# Generated by `modbox completion bash` from the CLI's command tree: do not edit. Regenerate with
# `cmake --build build --target completions`. Install as
# /usr/share/bash-completion/completions/modbox, or source it from ~/.bashrc.

# The live sandboxes' names. Asks only an agent that is already running: pressing TAB must not
# start one.
_modbox_sandboxes() {
    command modbox agent status >/dev/null 2>&1 || return 0
    command modbox list -q --status running 2>/dev/null
    command modbox list -q --status provisioning 2>/dev/null
}

# _modbox_reply WORDS CURRENT [PREFIX]: the WORDS that start with CURRENT become the completions.
_modbox_reply() {
    mapfile -t COMPREPLY < <(compgen -P "${3-}" -W "$1" -- "$2")
}

_modbox() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev="" path=modbox word option REPLY
    local -i i skip=0 operands=0 positional=0
    COMPREPLY=()
    ((COMP_CWORD > 1)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    # Walk the words before the cursor: subcommands extend the path, an option that takes a
    # value hides the next word, and the other words are positional arguments.
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ $word == = ]]; then skip=1; continue; fi # `--option=value` split at '='
        if ((skip)); then skip=0; continue; fi
        if ((operands)); then positional+=1; continue; fi
        case $word in
            --) operands=1 ;;
            -*) _modbox_takes_value "$path" "$word" && skip=1 ;;
            *)
                if _modbox_subcommand "$path" "$word"; then
                    path=$REPLY positional=0
                else
                    positional+=1
                fi
                ;;
        esac
    done

    if ((skip)); then # the cursor is on an option's value
        option=$prev
        if [[ $cur == = ]]; then
            cur=""
        elif [[ $prev == = ]]; then
            option=${COMP_WORDS[COMP_CWORD - 2]}
        fi
        _modbox_option_values "$path" "$option"
        _modbox_reply "$REPLY" "$cur"
    elif [[ $cur == --*=* ]] && ((!operands)); then # `--option=value` as one word
        _modbox_option_values "$path" "${cur%%=*}"
        _modbox_reply "$REPLY" "${cur#*=}" "${cur%%=*}="
    elif [[ $cur == -* ]] && ((!operands)); then
        _modbox_options "$path"
        _modbox_reply "$REPLY" "$cur"
    elif _modbox_subcommands "$path"; then
        _modbox_reply "$REPLY" "$cur"
    else
        _modbox_positional "$path" "$positional"
        _modbox_reply "$REPLY" "$cur"
    fi
    return 0
}

# What follows is the command tree. PATH is the command so far, such as "modbox agent start".
)sh";

/// `case` arms, one per line, closed by `fallback`.
std::string bash_case(std::string_view subject, const std::vector<std::string>& arms, std::string_view fallback) {
  std::string text = "    case " + std::string(subject) + " in\n";
  for (const auto& arm : arms) text += "        " + arm + "\n";
  if (!fallback.empty()) text += "        *) " + std::string(fallback) + " ;;\n";
  return text + "    esac\n";
}

std::string bash_function(std::string_view comment, std::string_view name, std::string_view body) {
  return "# " + std::string(comment) + "\n" + std::string(name) + "() {\n" + std::string(body) + "}\n\n";
}

std::string bash_subcommand(const std::vector<const CommandSpec*>& commands) {
  std::vector<std::string> arms;
  for (const auto* command : commands) {
    if (command->path.size() < 2) continue;
    std::string parent = join({command->path.begin(), command->path.end() - 1}, " ");
    std::vector<std::string> patterns{shell_quote(path_of(*command))};
    for (const auto& alias : command->aliases) patterns.push_back(shell_quote(parent + " " + alias));
    arms.push_back(join(patterns, "|") + ") REPLY=" + shell_quote(path_of(*command)) + " ;;");
  }
  return bash_function("_modbox_subcommand PATH WORD: REPLY is the path of WORD, a subcommand (or alias) of PATH.",
                       "_modbox_subcommand", bash_case("\"$1 $2\"", arms, "return 1"));
}

std::string bash_subcommands(const std::vector<const CommandSpec*>& commands) {
  std::vector<std::string> arms;
  for (const auto* command : commands)
    if (!command->subcommands.empty())
      arms.push_back(shell_quote(path_of(*command)) +
                     ") REPLY=" + shell_quote(join(visible_subcommand_names(*command), " ")) + " ;;");
  return bash_function("_modbox_subcommands PATH: REPLY is PATH's subcommands; fails when PATH has none.",
                       "_modbox_subcommands", bash_case("$1", arms, "return 1"));
}

std::string bash_options(const std::vector<const CommandSpec*>& commands) {
  std::vector<std::string> arms;
  for (const auto* command : commands) {
    std::vector<std::string> names;
    for (const auto& option : command->options) std::ranges::copy(offered_names(option), std::back_inserter(names));
    arms.push_back(shell_quote(path_of(*command)) + ") REPLY=" + shell_quote(join(names, " ")) + " ;;");
  }
  return bash_function("_modbox_options PATH: REPLY is the options PATH takes, its parents' included.",
                       "_modbox_options", bash_case("$1", arms, "REPLY=\"\""));
}

std::string bash_takes_value(const std::vector<const CommandSpec*>& commands) {
  std::vector<std::string> arms;
  for (const auto* command : commands) {
    std::vector<std::string> names;
    for (const auto& option : command->options)
      if (option.takes_value) std::ranges::copy(option.names, std::back_inserter(names));
    if (names.empty()) continue;
    arms.push_back(shell_quote(path_of(*command)) + ") case $2 in " + join(names, "|") + ") return 0 ;; esac ;;");
  }
  return bash_function("_modbox_takes_value PATH OPTION: whether OPTION of PATH is followed by a value.",
                       "_modbox_takes_value", bash_case("$1", arms, "") + "    return 1\n");
}

std::string bash_option_values(const std::vector<const CommandSpec*>& commands) {
  std::vector<std::string> arms;
  for (const auto* command : commands)
    for (const auto& option : command->options) {
      if (option.choices.empty()) continue;
      std::vector<std::string> patterns;
      for (const auto& name : option.names) patterns.push_back(shell_quote(path_of(*command) + " " + name));
      arms.push_back(join(patterns, "|") + ") REPLY=" + shell_quote(join(option.choices, " ")) + " ;;");
    }
  return bash_function("_modbox_option_values PATH OPTION: REPLY is the values OPTION of PATH allows, if known.",
                       "_modbox_option_values", "    REPLY=\"\"\n" + bash_case("\"$1 $2\"", arms, ""));
}

std::string bash_positional(const std::vector<const CommandSpec*>& commands) {
  std::vector<std::string> arms;
  for (const auto* command : commands) {
    auto completes = [](const PositionalSpec& positional) {
      return positional.names_sandbox || !positional.choices.empty();
    };
    // Arms up to the last positional argument that completes, so that an earlier one without
    // completions is not matched by a later one's pattern.
    auto last = std::ranges::find_if(command->positionals.rbegin(), command->positionals.rend(), completes);
    std::size_t count = static_cast<std::size_t>(command->positionals.rend() - last);
    for (std::size_t index = 0; index < count; ++index) {
      const PositionalSpec& positional = command->positionals[index];
      std::string pattern = positional.repeats ? shell_quote(path_of(*command) + " ") + "*"
                                               : shell_quote(path_of(*command) + " " + std::to_string(index));
      std::string action = positional.names_sandbox     ? "REPLY=$(_modbox_sandboxes)"
                           : positional.choices.empty() ? ":"
                                                        : "REPLY=" + shell_quote(join(positional.choices, " "));
      arms.push_back(pattern + ") " + action + " ;;");
      if (positional.repeats) break;
    }
  }
  return bash_function("_modbox_positional PATH INDEX: REPLY is the values of PATH's positional argument INDEX.",
                       "_modbox_positional", "    REPLY=\"\"\n" + bash_case("\"$1 $2\"", arms, ""));
}

// ---- zsh ----

constexpr std::string_view zsh_prologue = R"sh(#compdef modbox
# zsh completion for modbox.
# Generated by `modbox completion zsh` from the CLI's command tree: do not edit. Regenerate with
# `cmake --build build --target completions`. Install as _modbox in a directory of $fpath, or
# source it after compinit.

# The live sandboxes' names. Asks only an agent that is already running: pressing TAB must not
# start one.
_modbox_sandboxes() {
  local expl
  local -a names
  if command modbox agent status >/dev/null 2>&1; then
    names=(${(f)"$(command modbox list -q --status running 2>/dev/null
                   command modbox list -q --status provisioning 2>/dev/null)"})
  fi
  _wanted sandboxes expl sandbox compadd -a names
}

)sh";

constexpr std::string_view zsh_epilogue = R"sh(if [[ $funcstack[1] == _modbox ]]; then
  _modbox "$@"
else
  compdef _modbox modbox
fi
)sh";

std::string zsh_function_name(const CommandSpec& command) {
  std::string name = "_" + join(command.path, "_");
  std::ranges::replace(name, '-', '_');
  return name;
}

/// Text for the brackets of an _arguments spec.
std::string zsh_bracketed(std::string_view text) {
  std::string escaped;
  for (char c : text) {
    if (c == '[' || c == ']' || c == '\\') escaped += '\\';
    escaped += c;
  }
  return escaped;
}

/// The _arguments action that completes from `choices`, or shows the message only.
std::string zsh_action(const std::vector<std::string>& choices) {
  return choices.empty() ? " " : "(" + join(choices, " ") + ")";
}

std::vector<std::string> zsh_option_specs(const OptionSpec& option) {
  std::string exclusions = option.repeatable ? "*" : option.names.size() > 1 ? "(" + join(option.names, " ") + ")" : "";
  std::string message = option.names.front().substr(option.names.front().find_first_not_of('-'));
  std::vector<std::string> specs;
  for (const auto& name : option.names) {
    std::string spec = exclusions + name;
    if (option.takes_value) spec += name.starts_with("--") ? "=" : "+";
    spec += "[" + zsh_bracketed(option.description) + "]";
    if (option.takes_value) spec += ":" + message + ":" + zsh_action(option.choices);
    specs.push_back(shell_quote(spec));
  }
  return specs;
}

std::vector<std::string> zsh_positional_specs(const CommandSpec& command) {
  std::vector<std::string> specs;
  for (std::size_t index = 0; index < command.positionals.size(); ++index) {
    const PositionalSpec& positional = command.positionals[index];
    std::string action = positional.names_sandbox ? "_modbox_sandboxes" : zsh_action(positional.choices);
    specs.push_back(
        shell_quote((positional.repeats ? "*" : std::to_string(index + 1)) + ":" + positional.name + ":" + action));
    if (positional.repeats) break;
  }
  return specs;
}

std::string zsh_arguments(const std::vector<std::string>& flags, const std::vector<std::string>& specs) {
  std::string text = "  _arguments";
  for (const auto& flag : flags) text += " " + flag;
  for (const auto& spec : specs) text += " \\\n    " + spec;
  return text;
}

std::string zsh_command_function(const CommandSpec& command) {
  std::vector<std::string> specs;
  for (const auto& option : command.options) std::ranges::copy(zsh_option_specs(option), std::back_inserter(specs));
  std::string text = zsh_function_name(command) + "() {\n";
  if (command.subcommands.empty()) {
    std::ranges::copy(zsh_positional_specs(command), std::back_inserter(specs));
    return text + zsh_arguments({"-S"}, specs) + "\n}\n\n";
  }
  specs.push_back("': :->command'");
  specs.push_back("'*:: :->argument'");
  std::string context = join(command.path, "-");
  text +=
      "  local curcontext=$curcontext state state_descr line ret=1\n"
      "  typeset -A opt_args\n" +
      zsh_arguments({"-C", "-S"}, specs) +
      " && ret=0\n"
      "  case $state in\n"
      "    (command)\n"
      "      local -a commands=(\n";
  for (const auto& subcommand : command.subcommands)
    if (!subcommand.hidden)
      text += "        " + shell_quote(subcommand.path.back() + ":" + subcommand.description) + "\n";
  text +=
      "      )\n"
      "      _describe -t commands " +
      shell_quote(path_of(command) + " command") +
      " commands && ret=0\n"
      "      ;;\n"
      "    (argument)\n"
      "      curcontext=${curcontext%:*:*}:" +
      context +
      "-$words[1]:\n"
      "      case $words[1] in\n";
  for (const auto& subcommand : command.subcommands) {
    std::vector<std::string> names{subcommand.path.back()};
    std::ranges::copy(subcommand.aliases, std::back_inserter(names));
    text += "        (" + join(names, "|") + ") " + zsh_function_name(subcommand) + " && ret=0 ;;\n";
  }
  return text +
         "      esac\n"
         "      ;;\n"
         "  esac\n"
         "  return ret\n"
         "}\n\n";
}

}  // namespace

CommandSpec describe_command_tree(const CLI::App& app, const std::string& program) {
  return describe_command(app, {program}, {});
}

std::string bash_completion_script(const CLI::App& app) {
  CommandSpec tree = describe_command_tree(app);
  std::vector<const CommandSpec*> commands;
  collect_commands(tree, commands);
  return std::string(bash_prologue) + "\n" + bash_subcommand(commands) + bash_subcommands(commands) +
         bash_options(commands) + bash_takes_value(commands) + bash_option_values(commands) +
         bash_positional(commands) + "complete -F _modbox modbox\n";
}

std::string zsh_completion_script(const CLI::App& app) {
  CommandSpec tree = describe_command_tree(app);
  std::vector<const CommandSpec*> commands;
  collect_commands(tree, commands);
  std::string script(zsh_prologue);
  for (const auto* command : commands) script += zsh_command_function(*command);
  return script + std::string(zsh_epilogue);
}

void add_completion_command(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand("completion", "Print a completion script for bash or zsh");
  // Hidden from --help, which is for using sandboxes; modbox(1) documents it.
  command->group("");
  auto shell = std::make_shared<std::string>();
  command->add_option("shell", *shell, "The shell: bash or zsh")->required()->check(CLI::IsMember({"bash", "zsh"}));
  command->callback([&app, &context, shell] {
    context.action = [&app, shell]() -> Result<int> {
      std::string script = *shell == "zsh" ? zsh_completion_script(app) : bash_completion_script(app);
      std::fwrite(script.data(), 1, script.size(), stdout);
      return 0;
    };
  });
}

}  // namespace modbox
