#include "cli/table.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <numeric>

namespace modbox {

std::string relative_time(TimePoint then, TimePoint now) {
  using namespace std::chrono;
  bool future = then > now;
  auto seconds = duration_cast<std::chrono::seconds>(future ? then - now : now - then).count();
  if (seconds < 1) return "just now";
  struct Unit {
    long long seconds;
    const char* name;
  };
  static constexpr Unit units[] = {{86400, "day"}, {3600, "hour"}, {60, "minute"}, {1, "second"}};
  for (const auto& unit : units) {
    if (seconds < unit.seconds) continue;
    long long count = seconds / unit.seconds;
    std::string amount = std::to_string(count) + " " + unit.name + (count == 1 ? "" : "s");
    return future ? "in " + amount : amount + " ago";
  }
  return "just now";
}

TerminalOutput terminal_output(const TerminalFacts& facts) {
  TerminalOutput output;
  std::size_t columns = 0;
  if (facts.columns) {
    const std::string& text = *facts.columns;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), columns);
    if (error != std::errc() || end != text.data() + text.size()) columns = 0;
  }
  output.width = columns > 0 ? columns : facts.is_tty ? facts.tty_columns : 0;
  output.colour = facts.is_tty && (!facts.no_color || facts.no_color->empty()) && facts.term.value_or("") != "dumb";
  return output;
}

TerminalOutput stdout_terminal() {
  auto environment = [](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    return value ? std::optional<std::string>(value) : std::nullopt;
  };
  TerminalFacts facts{.is_tty = ::isatty(STDOUT_FILENO) == 1,
                      .columns = environment("COLUMNS"),
                      .no_color = environment("NO_COLOR"),
                      .term = environment("TERM")};
  winsize size{};
  if (facts.is_tty && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0) facts.tty_columns = size.ws_col;
  return terminal_output(facts);
}

std::size_t display_width(std::string_view text) {
  return static_cast<std::size_t>(
      std::ranges::count_if(text, [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string truncate_to_width(std::string_view text, std::size_t width) {
  if (display_width(text) <= width) return std::string(text);
  if (width == 0) return "";
  // Keep width - 1 characters, cutting before the lead byte of the next one.
  std::size_t kept = 0, end = 0;
  for (; end < text.size(); ++end)
    if ((static_cast<unsigned char>(text[end]) & 0xC0) != 0x80 && kept++ == width - 1) break;
  return std::string(text.substr(0, end)) + "…";
}

namespace {

/// Narrows the flexible columns a column at a time, the widest first (the first listed of equals), so
/// that the cut is shared among the widest, until the table fits `width` or none can give more.
void fit_widths(std::vector<std::size_t>& widths, const std::vector<std::size_t>& minimums,
                const std::vector<std::size_t>& flexible, std::size_t width) {
  std::size_t total = std::accumulate(widths.begin(), widths.end(), std::size_t{0}) + 2 * (widths.size() - 1);
  for (; total > width; --total) {
    std::size_t widest = widths.size();
    for (std::size_t column : flexible)
      if (column < widths.size() && widths[column] > minimums[column] &&
          (widest == widths.size() || widths[column] > widths[widest]))
        widest = column;
    if (widest == widths.size()) return;
    --widths[widest];
  }
}

}  // namespace

std::string format_columns(const std::vector<std::vector<std::string>>& rows, const TableLayout& layout) {
  std::vector<std::size_t> widths, minimums;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (std::size_t column = 0; column < row.size(); ++column)
      widths[column] = std::max(widths[column], display_width(row[column]));
  }
  if (widths.empty()) return "";
  minimums.resize(widths.size(), 0);
  if (!rows.empty())
    for (std::size_t column = 0; column < rows.front().size(); ++column)
      minimums[column] = std::max<std::size_t>(display_width(rows.front()[column]), 3);
  if (layout.output.width > 0) fit_widths(widths, minimums, layout.flexible, layout.output.width);
  std::string text;
  for (std::size_t index = 0; index < rows.size(); ++index) {
    const auto& row = rows[index];
    std::string line;
    for (std::size_t column = 0; column < row.size(); ++column) {
      std::string cell = truncate_to_width(row[column], widths[column]);
      std::size_t padding = widths[column] - display_width(cell);
      std::string_view colour =
          index > 0 && layout.output.colour && layout.colour_of ? layout.colour_of(column, row[column]) : "";
      if (colour.empty())
        line += cell;
      else
        line += "\x1b[" + std::string(colour) + "m" + cell + "\x1b[0m";
      if (column + 1 < row.size()) line += std::string(padding + 2, ' ');
    }
    text += line + "\n";
  }
  return text;
}

std::string_view status_colour(std::string_view status) {
  if (status.starts_with("running")) return "32";
  if (status.starts_with("provisioning")) return "33";
  if (status.starts_with("failed")) return "31";
  if (status.starts_with("exited (") && !status.starts_with("exited (0)")) return "31";
  return "";
}

}  // namespace modbox
