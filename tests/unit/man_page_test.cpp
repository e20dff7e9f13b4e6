// man/modbox.1 documents the CLI as it is built: each command has its section under COMMANDS,
// which names its arguments and aliases and documents each of its options and their values, and
// no section names an option its command does not take. A command or option added, renamed or
// removed without its documentation fails here. man/modbox-api.7 documents every route of the
// control API that the agent registers, and no route it does not.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cli/cli.h"
#include "cli/completion.h"
#include "common/system.h"

using namespace modbox;

namespace {

/// The page as a reader sees it: roff's `\-` is a `-`, font changes and `\&` are dropped.
std::string plain_text(std::string_view roff) {
  std::string text;
  for (std::size_t i = 0; i < roff.size(); ++i) {
    if (roff[i] == '\\' && i + 1 < roff.size()) {
      char next = roff[i + 1];
      if (next == '-') {
        text += '-';
        ++i;
        continue;
      }
      if (next == '&' || (next == 'f' && i + 2 < roff.size())) {
        i += next == 'f' ? 2 : 1;
        continue;
      }
    }
    text += roff[i];
  }
  return text;
}

struct Section {
  std::string chapter;  // the .SH title: "COMMANDS"
  std::string heading;  // the .SS title, empty for the text before the first .SS
  std::string body;
};

std::string macro_argument(std::string_view line) {
  std::string argument(line.substr(std::min(line.size(), std::size_t{4})));
  std::erase(argument, '"');
  return argument;
}

std::vector<Section> sections_of(const std::string& text) {
  std::vector<Section> sections;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = std::min(text.find('\n', start), text.size());
    std::string_view line(text.data() + start, end - start);
    if (line.starts_with(".SH "))
      sections.push_back({macro_argument(line), "", ""});
    else if (line.starts_with(".SS ") && !sections.empty())
      sections.push_back({sections.back().chapter, macro_argument(line), ""});
    else if (!sections.empty())
      sections.back().body += std::string(line) + "\n";
    start = end + 1;
  }
  return sections;
}

bool is_word_character(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

/// Whether `word` occurs in `text` with no word character on either side.
bool contains_word(std::string_view text, std::string_view word) {
  for (auto at = text.find(word); at != std::string_view::npos; at = text.find(word, at + 1)) {
    bool starts = at == 0 || !is_word_character(text[at - 1]);
    bool ends = at + word.size() == text.size() || !is_word_character(text[at + word.size()]);
    if (starts && ends) return true;
  }
  return false;
}

/// Every long option the text names: `--status`, not `--` alone.
std::set<std::string> long_options_named(std::string_view text) {
  std::set<std::string> options;
  for (auto at = text.find("--"); at != std::string_view::npos; at = text.find("--", at + 2)) {
    if (at > 0 && is_word_character(text[at - 1])) continue;
    std::size_t end = at + 2;
    while (end < text.size() && (std::islower(static_cast<unsigned char>(text[end])) ||
                                 std::isdigit(static_cast<unsigned char>(text[end])) || text[end] == '-'))
      ++end;
    if (end > at + 2 && std::islower(static_cast<unsigned char>(text[at + 2])))
      options.insert(std::string(text.substr(at, end - at)));
  }
  return options;
}

std::vector<std::string> long_names(const CLI::Option& option) {
  std::vector<std::string> names;
  for (const auto& name : option.get_lnames()) names.push_back("--" + name);
  return names;
}

class ManPage {
 public:
  explicit ManPage(const std::string& file = "man/modbox.1") {
    auto roff = read_file(std::filesystem::path(MODBOX_SOURCE_DIR) / file);
    INFO("reading " << file << ": " << (roff ? "" : roff.error().message));
    REQUIRE(roff.has_value());
    text_ = plain_text(*roff);
    sections_ = sections_of(text_);
  }

  const std::string& text() const { return text_; }
  const std::vector<Section>& sections() const { return sections_; }

  const Section* chapter(const std::string& title) const {
    for (const auto& section : sections_)
      if (section.chapter == title && section.heading.empty()) return &section;
    return nullptr;
  }

  /// The section under COMMANDS whose heading starts with `command` ("modbox agent start").
  const Section* command_section(const std::string& command) const {
    for (const auto& section : sections_)
      if (section.chapter == "COMMANDS" && section.heading.starts_with(command) &&
          (section.heading.size() == command.size() || section.heading[command.size()] == ' '))
        return &section;
    return nullptr;
  }

 private:
  std::string text_;
  std::vector<Section> sections_;
};

/// Checks the section of one command: its positional arguments in the heading, its options and
/// their values in the body, and no option it does not take. `options` is every long option it
/// takes, its parents' included. Collects the heading it checked.
void check_command_section(const ManPage& page, const CLI::App& subcommand, const std::string& name,
                           const std::set<std::string>& options, std::set<std::string>& checked) {
  INFO("command `" << name << "`");
  const Section* section = page.command_section(name);
  if (section == nullptr) {
    FAIL_CHECK("man/modbox.1 has no section `.SS \"" << name << " ...\"` under COMMANDS");
    return;
  }
  checked.insert(section->heading);
  std::string documented = section->heading + "\n" + section->body;
  for (const auto& alias : subcommand.get_aliases()) {
    INFO("alias " << alias);
    CHECK(contains_word(section->body, alias));
  }
  for (const CLI::Option* option : subcommand.get_options()) {
    if (option == subcommand.get_help_ptr()) continue;  // every command has --help; OPTIONS says so
    if (option->get_positional() && !option->nonpositional()) {
      INFO("positional argument " << option->get_name() << " in the heading: " << section->heading);
      auto choices = option_choices(*option);
      CHECK((contains_word(section->heading, option->get_name()) ||
             (!choices.empty() && std::ranges::all_of(choices, [&](const std::string& choice) {
               return contains_word(section->heading, choice);
             }))));
      continue;
    }
    for (const auto& long_name : long_names(*option)) {
      INFO("option " << long_name);
      CHECK(contains_word(section->body, long_name));
    }
    for (const auto& choice : option_choices(*option)) {
      INFO("value " << choice << " of " << option->get_name());
      CHECK(contains_word(section->body, choice));
    }
  }
  for (const auto& named : long_options_named(documented)) {
    INFO("the section names " << named << ", which `" << name << "` does not take");
    CHECK(options.contains(named));
  }
}

/// Checks the sections of `command`'s subcommands; `accepted` is every long option `command`
/// takes, its parents' included. Collects the headings of the sections it checked.
void check_subcommands(const ManPage& page, const CLI::App& command, const std::string& path,
                       const std::set<std::string>& accepted, std::set<std::string>& checked) {
  for (const CLI::App* subcommand : command.get_subcommands({})) {
    std::string name = path + " " + subcommand->get_name();
    std::set<std::string> options = subcommand->get_fallthrough() ? accepted : std::set<std::string>{};
    for (const CLI::Option* option : subcommand->get_options())
      for (const auto& long_name : long_names(*option)) options.insert(long_name);
    if (!subcommand->get_subcommands({}).empty()) {
      CHECK(contains_word(page.text(), subcommand->get_name()));
      check_subcommands(page, *subcommand, name, options, checked);
      // A group that is a command of its own too (`modbox files TASK`, `modbox files rm ...`)
      // takes arguments and has its own section.
      bool takes_arguments = std::ranges::any_of(
          subcommand->get_options(), [&](const CLI::Option* option) { return option != subcommand->get_help_ptr(); });
      if (!takes_arguments) continue;
    }
    check_command_section(page, *subcommand, name, options, checked);
  }
}

}  // namespace

TEST_CASE("man/modbox.1 documents every command and option", "[man]") {
  CommandTree tree;
  ManPage page;

  SECTION("its version is the build's") {
    auto title = page.text().find(".TH MODBOX 1 ");
    REQUIRE(title != std::string::npos);
    std::string line = page.text().substr(title, page.text().find('\n', title) - title);
    INFO(line);
    CHECK(contains_word(line, "modbox " MODBOX_VERSION));
  }

  SECTION("the global options under OPTIONS") {
    const Section* options = page.chapter("OPTIONS");
    REQUIRE(options != nullptr);
    std::set<std::string> global;
    for (const CLI::Option* option : tree.app.get_options())
      for (const auto& long_name : long_names(*option)) {
        INFO("global option " << long_name);
        CHECK(contains_word(options->body, long_name));
        global.insert(long_name);
      }
    for (const auto& named : long_options_named(options->body)) {
      INFO("OPTIONS names " << named << ", which is no global option");
      CHECK(global.contains(named));
    }
  }

  SECTION("each command in its section under COMMANDS, and no section for a command that is gone") {
    std::set<std::string> global;
    for (const CLI::Option* option : tree.app.get_options())
      for (const auto& long_name : long_names(*option)) global.insert(long_name);
    std::set<std::string> checked;
    check_subcommands(page, tree.app, "modbox", global, checked);
    for (const auto& section : page.sections())
      if (section.chapter == "COMMANDS" && !section.heading.empty()) {
        INFO("section `" << section.heading << "` documents no command of the CLI");
        CHECK(checked.contains(section.heading));
      }
  }
}

TEST_CASE("man/modbox.1 has the chapters scripts and people look for", "[man]") {
  ManPage page;
  for (const char* title : {"OPTIONS", "COMMANDS", "OUTPUT", "ENVIRONMENT", "FILES", "EXIT STATUS", "SEE ALSO"}) {
    INFO(title);
    CHECK(page.chapter(title) != nullptr);
  }
  const Section* environment = page.chapter("ENVIRONMENT");
  REQUIRE(environment != nullptr);
  for (const char* name : {"MODBOX_API_URL", "MODBOX_API_TOKEN", "MODBOX_WORKSPACE", "COLUMNS", "NO_COLOR"}) {
    INFO(name);
    CHECK(contains_word(environment->body, name));
  }
  const Section* exit_status = page.chapter("EXIT STATUS");
  REQUIRE(exit_status != nullptr);
  for (const char* status : {"0", "1", "2", "3", "4", "5"}) CHECK(contains_word(exit_status->body, status));
  CHECK(page.chapter("SEE ALSO")->body.find("modbox-api (7)") != std::string::npos);
}

namespace {

/// The control API's routes as agent/routes_*.cpp register them: "POST /sandboxes/provision".
std::set<std::string> registered_routes() {
  std::set<std::string> routes;
  for (const char* file : {"agent/routes_sandboxes.cpp", "agent/routes_images.cpp"}) {
    auto source = read_file(std::filesystem::path(MODBOX_SOURCE_DIR) / file);
    INFO(file);
    REQUIRE(source.has_value());
    const std::string call = "router.add(\"";
    for (auto at = source->find(call); at != std::string::npos; at = source->find(call, at + 1)) {
      std::size_t method_end = source->find('"', at + call.size());
      std::size_t path_start = source->find('"', method_end + 1) + 1;
      std::size_t path_end = source->find('"', path_start);
      routes.insert(source->substr(at + call.size(), method_end - at - call.size()) + " " +
                    source->substr(path_start, path_end - path_start));
    }
  }
  return routes;
}

}  // namespace

TEST_CASE("man/modbox-api.7 documents every route of the control API", "[man]") {
  ManPage page("man/modbox-api.7");
  auto routes = registered_routes();
  CHECK(routes.size() >= 20);
  CHECK(routes.contains("POST /sandboxes/provision"));
  std::set<std::string> documented;
  for (const auto& section : page.sections())
    if (section.chapter == "CONTROL API" && !section.heading.empty()) documented.insert(section.heading);
  for (const auto& route : routes) {
    INFO("the agent serves " << route << ", which has no `.SS \"" << route << "\"` under CONTROL API");
    CHECK(documented.contains(route));
  }
  for (const auto& heading : documented) {
    INFO("modbox-api(7) documents " << heading << ", which the agent does not serve");
    CHECK(routes.contains(heading));
  }
  for (const char* chapter : {"DESCRIPTION", "CONTROL API", "SANDBOX URL", "SEE ALSO"}) {
    INFO(chapter);
    CHECK(page.chapter(chapter) != nullptr);
  }
  // Curl examples, for the routes people call first.
  for (const char* example : {"/sandboxes/provision", "/sandboxes/wait", "/sandboxes/destroy", "/modbox/api/exec"}) {
    INFO(example);
    bool shown = false;
    for (std::size_t start = 0; start < page.text().size() && !shown;) {
      std::size_t end = std::min(page.text().find('\n', start), page.text().size());
      std::string_view line(page.text().data() + start, end - start);
      shown = line.starts_with("curl ") && line.find(example) != std::string_view::npos;
      // An example's URL may be on the continuation line after a backslash.
      if (line.starts_with("curl ") && line.ends_with("\\e")) {
        std::size_t next = std::min(page.text().find('\n', end + 1), page.text().size());
        shown = page.text().substr(end + 1, next - end - 1).find(example) != std::string::npos;
      }
      start = end + 1;
    }
    CHECK(shown);
  }
}

TEST_CASE("man/modboxd.8 documents every option of modboxd", "[man]") {
  // agent/main.cpp parses modboxd's options inline: its source names them.
  auto source = read_file(std::filesystem::path(MODBOX_SOURCE_DIR) / "agent/main.cpp");
  REQUIRE(source.has_value());
  std::set<std::string> options{"--help"};  // every CLI11 command has it
  for (const std::string call : {"app.add_option(\"", "app.add_flag(\"", "app.set_version_flag(\""})
    for (auto at = source->find(call); at != std::string::npos; at = source->find(call, at + 1)) {
      std::size_t end = source->find('"', at + call.size());
      std::string names = source->substr(at + call.size(), end - at - call.size());
      for (const auto& name : long_options_named(names)) options.insert(name);
    }
  CHECK(options.size() >= 10);
  CHECK(options.contains("--retention-days"));
  ManPage page("man/modboxd.8");
  const Section* documented = page.chapter("OPTIONS");
  REQUIRE(documented != nullptr);
  for (const auto& option : options) {
    INFO("modboxd takes " << option << ", which man/modboxd.8 does not document under OPTIONS");
    CHECK(contains_word(documented->body, option));
  }
  for (const auto& named : long_options_named(documented->body)) {
    INFO("man/modboxd.8 documents " << named << ", which modboxd does not take");
    CHECK(options.contains(named));
  }
}

TEST_CASE("the man page test reads roff as a reader would", "[man]") {
  CHECK(plain_text(R"(.BR \-q ", " \-\-quiet)") == R"(.BR -q ", " --quiet)");
  CHECK(plain_text(R"(\fB\-\-status\fR \fIstatus\fP)") == "--status status");
  CHECK(long_options_named("use --json or --status=running, not -- or x--y") ==
        std::set<std::string>{"--json", "--status"});
  CHECK(contains_word("see --image-id here", "--image-id"));
  CHECK_FALSE(contains_word("see --image-id here", "--image"));
}
