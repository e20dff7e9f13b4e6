#include "cli/table.h"

#include <algorithm>
#include <chrono>

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

std::string format_columns(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (std::size_t column = 0; column < row.size(); ++column)
      widths[column] = std::max(widths[column], row[column].size());
  }
  std::string text;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t column = 0; column < row.size(); ++column) {
      line += row[column];
      if (column + 1 < row.size()) line += std::string(widths[column] - row[column].size() + 2, ' ');
    }
    text += line + "\n";
  }
  return text;
}

}  // namespace modbox
