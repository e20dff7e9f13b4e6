#pragma once
// How the CLI shows lists to people: columns as wide as their widest cell, and times relative to now,
// as `docker ps` shows them.

#include <string>
#include <vector>

#include "common/system.h"

namespace modbox {

/// `then` as a person says it, seen from `now`: "just now", "1 second ago", "3 minutes ago",
/// "2 hours ago", "5 days ago" (the largest whole unit, up to days); "in 2 minutes" for a time to come.
std::string relative_time(TimePoint then, TimePoint now);

/// `rows` (the first is the header) as lines of columns separated by two spaces, each column as
/// wide as its widest cell; the last column is not padded.
std::string format_columns(const std::vector<std::vector<std::string>>& rows);

}  // namespace modbox
