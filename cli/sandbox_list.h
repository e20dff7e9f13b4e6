#pragma once
// What `modbox list` shows: the live sandboxes, or with --all the ended ones too, newest first
// (as `docker ps` and `docker ps -a`), and the table it shows them in.

#include <cstddef>
#include <string>
#include <vector>

#include "cli/table.h"
#include "common/models.h"

namespace modbox {

struct ListSelection {
  bool all = false;           // -a: the ended sandboxes (failed, destroyed) too
  bool status_given = false;  // --status: the agent has filtered already; show what it answered
};

/// The positions in `sandboxes` (as GET /sandboxes answers them, oldest first) of those `modbox list`
/// shows, in the order it shows them: newest first.
std::vector<std::size_t> listed_sandboxes(const std::vector<Sandbox>& sandboxes, const ListSelection& selection);

/// A sandbox's STATUS cell: its status, or for one that ended how and when ("exited (3) 5 minutes ago",
/// "destroyed (ttl) 1 hour ago").
std::string status_cell(const Sandbox& sandbox, TimePoint now);

/// The table of `sandboxes` (a header, then a line each), with times relative to `now`, fitted to
/// `output`: its NAME and ID columns are cut first, and its statuses are coloured when it may.
std::string sandbox_table(const std::vector<Sandbox>& sandboxes, TimePoint now, const TerminalOutput& output = {});

}  // namespace modbox
