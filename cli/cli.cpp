#include "cli/cli.h"

#include <unistd.h>

#include <cstdio>

#include "cli/format_template.h"
#include "common/models.h"
#include "common/system.h"

namespace modbox {

Result<void> CliContext::load_settings() {
  auto file = load_config_file(config_file_path());
  if (!file) return std::unexpected(file.error());
  settings = resolve_settings({{"api_url", api_url}, {"workspace", workspace}}, process_environment, *file);
  return {};
}

AgentClient CliContext::client() const {
  AgentEndpoint endpoint{settings.api_url.value, settings.api_token.value, settings.api_url.origin};
  return AgentClient(AgentPaths::from_environment(), settings.workspace.value, std::move(endpoint));
}

Result<AgentClient> CliContext::running_client() const {
  AgentClient agent = client();
  if (auto ready = agent.ensure_agent(true); !ready) return std::unexpected(ready.error());
  return agent;
}

Result<std::string> CliContext::call(const std::string& method, const std::string& path, const std::string& body,
                                     int timeout_seconds) const {
  auto agent = running_client();
  if (!agent) return std::unexpected(agent.error());
  return agent->call(method, path, body, timeout_seconds);
}

Result<SandboxTarget> sandbox_target(const CliContext& context, const std::string& task_id) {
  auto agent = context.running_client();
  if (!agent) return std::unexpected(agent.error());
  auto body = agent->call("GET", "/sandboxes/detail/" + percent_encode(task_id));
  if (!body) return std::unexpected(body.error());
  auto sandbox = sandbox_from_json(*body);
  if (!sandbox) return std::unexpected(sandbox.error());
  if (sandbox->status != SandboxStatus::running || !sandbox->sandbox_url)
    return fail(ErrorKind::conflict,
                "sandbox '" + task_id + "' is " + std::string(to_string(sandbox->status)) + ", not running");
  return SandboxTarget{std::move(*agent), *sandbox->sandbox_url};
}

void add_format_option(CLI::App& command, CliContext& context) {
  command
      .add_option("--format", context.format,
                  "Print each item through this template: '{{.name}} {{.status}}' (the API's JSON field names)")
      ->type_name("TEMPLATE")
      ->check(CLI::Validator(
          [](const std::string& text) {
            auto parsed = FormatTemplate::parse(text);
            return parsed ? std::string() : parsed.error().message;
          },
          ""));
}

Result<bool> print_formatted(const CliContext& context, const std::string& json) {
  if (context.format.empty()) return false;
  if (context.json || context.quiet) return fail(ErrorKind::bad_request, "--format goes without --json and -q");
  auto parsed = FormatTemplate::parse(context.format);
  if (!parsed) return fail(ErrorKind::bad_request, "--format: " + parsed.error().message);
  auto lines = parsed->render(json);
  if (!lines) return std::unexpected(lines.error());
  std::fwrite(lines->data(), 1, lines->size(), stdout);
  return true;
}

int combined_exit_status(const std::vector<int>& failures) {
  if (failures.empty()) return exit_status::success;
  for (int failure : failures)
    if (failure != failures.front()) return exit_status::error;
  return failures.front();
}

void print_error(const Error& error) {
  if (error.kind == ErrorKind::validation && !error.fields.empty()) {
    std::fprintf(stderr, "modbox: invalid request:\n");
    for (const auto& field : error.fields) {
      std::string where;
      for (const auto& part : field.loc) where += (where.empty() ? "" : ".") + part;
      std::fprintf(stderr, "  %s: %s\n", where.c_str(), field.msg.c_str());
    }
    return;
  }
  std::fprintf(stderr, "modbox: %s\n", error.message.c_str());
}

}  // namespace modbox
