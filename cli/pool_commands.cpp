// modbox pool set | ls: warm pools, sandboxes started ahead per image for provisions to claim.

#include <cstdio>

#include "cli/cli.h"
#include "cli/table.h"
#include "common/pool_models.h"

namespace modbox {

namespace {

void print_table(const std::vector<PoolView>& pools) {
  std::vector<std::vector<std::string>> rows{{"IMAGE ID", "IMAGE", "SIZE", "READY", "STARTING", "LAST ERROR"}};
  for (const auto& pool : pools)
    rows.push_back({pool.image_id, pool.image, std::to_string(pool.size), std::to_string(pool.ready),
                    std::to_string(pool.starting), pool.last_error.value_or("-")});
  std::fputs(format_columns(rows, {.output = stdout_terminal(), .flexible = {1, 5, 0}}).c_str(), stdout);
}

void add_set(CLI::App& group, CliContext& context) {
  auto* command = group.add_subcommand(
      "set", "Keep SIZE sandboxes of IMAGE started for provisions to claim (--size 0 deletes the pool)");
  struct Options {
    std::string image;
    int size = 0;
  };
  auto options = std::make_shared<Options>();
  command->add_option("image", options->image, "Image id, name or repository")->required()->type_name(image_type_name);
  command->add_option("--size", options->size, "Idle sandboxes to keep: 0 to 20")->required();
  command->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      auto agent = context.running_client();
      if (!agent) return std::unexpected(agent.error());
      auto image_id = image_id_of(*agent, options->image);
      if (!image_id) return std::unexpected(image_id.error());
      auto body = agent->call("PUT", "/pools/" + *image_id, pool_size_request_to_json({.size = options->size}));
      if (!body) return std::unexpected(body.error());
      auto pool = pool_from_json(*body);
      if (!pool) return std::unexpected(pool.error());
      if (context.json)
        std::printf("%s\n", body->c_str());
      else if (context.quiet)
        std::printf("%s\n", pool->image_id.c_str());
      else if (pool->size == 0)
        std::printf("deleted the pool of %s; its idle sandboxes are being removed\n", pool->image.c_str());
      else
        std::printf("pool of %s: %d sandboxes (%d ready, %d starting)\n", pool->image.c_str(), pool->size, pool->ready,
                    pool->starting);
      return 0;
    };
  });
}

void add_list(CLI::App& group, CliContext& context) {
  auto* command = group.add_subcommand("ls", "List warm pools: size, ready and starting sandboxes");
  command->alias("list");
  add_format_option(*command, context);
  command->callback([&context] {
    context.action = [&context]() -> Result<int> {
      auto body = context.call("GET", "/pools");
      if (!body) return std::unexpected(body.error());
      return print_list(context, *body, pools_from_json, &PoolView::image_id, print_table);
    };
  });
}

}  // namespace

void add_pool_commands(CLI::App& app, CliContext& context) {
  auto* group = app.add_subcommand("pool", "Warm pools: sandboxes started ahead, for provisions that answer at once");
  group->require_subcommand(1);
  add_set(*group, context);
  add_list(*group, context);
}

}  // namespace modbox
