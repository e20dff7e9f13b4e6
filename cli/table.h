#pragma once
// How the CLI shows lists to people: columns as wide as their widest cell, cut to fit a terminal,
// statuses in colour on a terminal, and times relative to now, as `docker ps` shows them.

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/system.h"

namespace modbox {

/// `then` as a person says it, seen from `now`: "just now", "1 second ago", "3 minutes ago",
/// "2 hours ago", "5 days ago" (the largest whole unit, up to days); "in 2 minutes" for a time to come.
std::string relative_time(TimePoint then, TimePoint now);

/// Where a table goes: how wide it may be and whether it may have colour.
struct TerminalOutput {
  std::size_t width = 0;  // the columns available; 0: no limit
  bool colour = false;    // SGR colour codes are welcome
};

/// The facts terminal_output decides from, apart so that tests can give them.
struct TerminalFacts {
  bool is_tty = false;                  // stdout is a terminal
  std::size_t tty_columns = 0;          // its width (TIOCGWINSZ), 0 when unknown
  std::optional<std::string> columns;   // $COLUMNS
  std::optional<std::string> no_color;  // $NO_COLOR
  std::optional<std::string> term;      // $TERM
};

/// A positive $COLUMNS wins, on a terminal or not (a script that sets it asks for that width);
/// else a terminal's own width; else no limit. Colour only on a terminal, unless NO_COLOR is set
/// (to anything but the empty string, as no-color.org says) or TERM is "dumb".
TerminalOutput terminal_output(const TerminalFacts& facts);

/// terminal_output for this process's stdout and environment.
TerminalOutput stdout_terminal();

/// How format_columns lays a table out.
struct TableLayout {
  TerminalOutput output;
  /// The columns that may be cut (with an ellipsis) when the table is wider than output.width,
  /// the widest of them first, never below their header's width.
  std::vector<std::size_t> flexible;
  /// The SGR parameters ("32": green) for a body cell, or "" for none; used when output.colour.
  std::function<std::string_view(std::size_t column, std::string_view cell)> colour_of;
};

/// The width of `text` on a terminal: one column per UTF-8 character.
std::size_t display_width(std::string_view text);

/// `text` cut to `width` columns, its last one an ellipsis ("…") when it was cut.
std::string truncate_to_width(std::string_view text, std::size_t width);

/// `rows` (the first is the header) as lines of columns separated by two spaces, each column as
/// wide as its widest cell, the flexible ones cut to fit `layout.output.width`; the last column is
/// not padded.
std::string format_columns(const std::vector<std::vector<std::string>>& rows, const TableLayout& layout = {});

/// The colour of a status cell ("running", "failed", "exited (1) 3 minutes ago"): running green,
/// provisioning yellow, failed and a non-zero exit red; "" for the others.
std::string_view status_colour(std::string_view status);

}  // namespace modbox
