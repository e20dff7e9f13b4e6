// modbox registries list | create | delete

#include <cstdio>
#include <iostream>

#include "cli/cli.h"
#include "cli/table.h"
#include "common/image_models.h"
#include "common/registry_models.h"

namespace modbox {

namespace {

void print_table(const std::vector<Registry>& registries) {
  std::vector<std::vector<std::string>> rows{{"ID", "NAME", "SERVER", "USERNAME", "AUTH", "WORKSPACE"}};
  for (const auto& registry : registries)
    rows.push_back({registry.id, registry.name, registry.server, registry.username.value_or("-"), registry.auth_type(),
                    registry.workspace_id.value_or("-")});
  std::fputs(format_columns(rows, {.output = stdout_terminal(), .flexible = {0, 2, 1, 3, 5}}).c_str(), stdout);
}

/// A registry argument: its id, or the name of exactly one visible credential.
Result<std::string> registry_id_of(const AgentClient& agent, const std::string& argument) {
  if (is_uuid(argument)) return argument;
  auto body = agent.call("GET", "/registries");
  if (!body) return std::unexpected(body.error());
  auto registries = registries_from_json(*body);
  if (!registries) return std::unexpected(registries.error());
  std::vector<std::string> matches;
  for (const auto& registry : *registries)
    if (registry.name == argument) matches.push_back(registry.id);
  if (matches.size() == 1) return matches.front();
  if (matches.empty()) return fail(ErrorKind::not_found, "no registry credential with id or name '" + argument + "'");
  return fail(ErrorKind::conflict, "'" + argument + "' names " + std::to_string(matches.size()) +
                                       " registry credentials; give the id (modbox registries list)");
}

/// The first line of standard input, as `docker login --password-stdin` reads it.
std::string read_secret_line() {
  std::string line;
  std::getline(std::cin, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

void add_list(CLI::App& group, CliContext& context) {
  auto* command = group.add_subcommand("list", "List registry credentials (never their secrets)");
  command->alias("ls");
  add_format_option(*command, context);
  command->callback([&context] {
    context.action = [&context]() -> Result<int> {
      auto body = context.call("GET", "/registries");
      if (!body) return std::unexpected(body.error());
      return print_list(context, *body, registries_from_json, &Registry::id, print_table);
    };
  });
}

void add_create(CLI::App& group, CliContext& context) {
  auto* command = group.add_subcommand("create", "Store credentials for pulling private images");
  struct Options {
    RegistryCreateRequest request;
    std::string username, password, token;
    bool password_stdin = false, token_stdin = false;
  };
  auto options = std::make_shared<Options>();
  command->add_option("name", options->request.name, "A name for the credential")->required();
  command->add_option("--server", options->request.server, "Registry host[:port]: ghcr.io, 127.0.0.1:5000")->required();
  command->add_option("-u,--username", options->username, "User name");
  auto* password_stdin =
      command->add_flag("--password-stdin", options->password_stdin, "Read the password from standard input");
  auto* token_stdin = command->add_flag("--token-stdin", options->token_stdin,
                                        "Read an access token from standard input (sent as the password)");
  auto* password = command->add_option("--password", options->password,
                                       "The password (visible to other local users in ps: prefer --password-stdin)");
  auto* token = command->add_option("--token", options->token, "An access token (prefer --token-stdin)");
  password_stdin->excludes(token_stdin)->excludes(password)->excludes(token);
  token_stdin->excludes(password)->excludes(token);
  password->excludes(token);
  command->add_flag("--insecure", options->request.insecure,
                    "Allow plain HTTP and unverified TLS (always so for 127.0.0.1 and localhost)");
  command->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      RegistryCreateRequest request = options->request;
      if (!options->username.empty()) request.username = options->username;
      if (options->password_stdin)
        request.password = read_secret_line();
      else if (!options->password.empty())
        request.password = options->password;
      if (options->token_stdin)
        request.token = read_secret_line();
      else if (!options->token.empty())
        request.token = options->token;
      auto body = context.call("POST", "/registries", registry_create_request_to_json(request));
      if (!body) return std::unexpected(body.error());
      auto registry = registry_from_json(*body);
      if (!registry) return std::unexpected(registry.error());
      if (context.json)
        std::printf("%s\n", body->c_str());
      else
        std::printf("%s\n", registry->id.c_str());
      return 0;
    };
  });
}

void add_delete(CLI::App& group, CliContext& context) {
  auto* command = group.add_subcommand("delete", "Delete registry credentials (refused while an image uses one)");
  command->alias("rm");
  auto ids = std::make_shared<std::vector<std::string>>();
  command->add_option("registry", *ids, "Credential ids or names")->required()->type_name(registry_type_name);
  command->callback([&context, ids] {
    context.action = [&context, ids]() -> Result<int> {
      auto agent = context.running_client();
      if (!agent) return std::unexpected(agent.error());
      return for_each_name(context, *ids,
                           [&](const std::string& argument) -> Result<std::pair<std::string, std::string>> {
                             auto id = registry_id_of(*agent, argument);
                             if (!id) return std::unexpected(id.error());
                             auto body = agent->call("DELETE", "/registries/" + *id);
                             if (!body) return std::unexpected(body.error());
                             return std::pair{*body, *id};
                           });
    };
  });
}

}  // namespace

void add_registry_commands(CLI::App& app, CliContext& context) {
  auto* group = app.add_subcommand("registries", "Credentials for private image registries");
  group->require_subcommand(1);
  add_list(*group, context);
  add_create(*group, context);
  add_delete(*group, context);
}

}  // namespace modbox
