#include "cli/sandbox_list.h"

#include <algorithm>

#include "cli/table.h"

namespace modbox {

std::vector<std::size_t> listed_sandboxes(const std::vector<Sandbox>& sandboxes, const ListSelection& selection) {
  std::vector<std::size_t> listed;
  for (std::size_t index = 0; index < sandboxes.size(); ++index)
    if (selection.all || selection.status_given || is_live(sandboxes[index].status)) listed.push_back(index);
  // Stable, so that sandboxes created in the same millisecond keep the agent's order, reversed.
  std::ranges::reverse(listed);
  std::ranges::stable_sort(listed, [&](std::size_t left, std::size_t right) {
    return sandboxes[left].created_at > sandboxes[right].created_at;
  });
  return listed;
}

std::string status_cell(const Sandbox& sandbox, TimePoint now) {
  if (sandbox.status != SandboxStatus::destroyed) return std::string(to_string(sandbox.status));
  std::string cell;
  if (sandbox.destroy_reason == DestroyReason::exited && sandbox.exit_code)
    cell = "exited (" + std::to_string(*sandbox.exit_code) + ")";
  else if (sandbox.destroy_reason)
    cell = "destroyed (" + std::string(to_string(*sandbox.destroy_reason)) + ")";
  else
    cell = "destroyed";
  if (sandbox.destroyed_at) cell += " " + relative_time(*sandbox.destroyed_at, now);
  return cell;
}

std::string sandbox_table(const std::vector<Sandbox>& sandboxes, TimePoint now, const TerminalOutput& output) {
  std::vector<std::vector<std::string>> rows{{"NAME", "STATUS", "CREATED", "URL", "ID"}};
  for (const auto& sandbox : sandboxes)
    rows.push_back({sandbox.name, status_cell(sandbox, now), relative_time(sandbox.created_at, now),
                    sandbox.sandbox_url.value_or("-"), sandbox.id});
  // The ID is the first to give way (the name says which sandbox it is), then a long name.
  return format_columns(
      rows, {.output = output, .flexible = {4, 0}, .colour_of = [](std::size_t column, std::string_view cell) {
               return column == 1 ? status_colour(cell) : std::string_view();
             }});
}

}  // namespace modbox
