#pragma once
// `--format TEMPLATE`: a Go-template-like line per item, as `docker ps --format` and `podman ps
// --format` take: `{{.name}} {{.status}}`. Fields are the API's JSON field names, nested with dots
// (`{{.readiness.phase}}`, `{{.port_urls.8000}}`); `{{json .tags}}` prints a value as JSON and
// `{{.}}` the whole item. A field the item lacks, or null, prints nothing. `\t`, `\n` and `\\` in
// the text are a tab, a newline and a backslash.

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace modbox {

class FormatTemplate {
 public:
  /// The template, or a bad_request Error saying what is wrong with it (an unclosed `{{`, an
  /// action that is not a field), for CLI11 to prefix with the option's name.
  static Result<FormatTemplate> parse(std::string_view text);

  /// The template applied to each element of `json` when it is an array, else to `json` itself:
  /// a line each. An error when `json` is not JSON, or a field is looked up inside a string or a
  /// number (`{{.name.first}}`).
  Result<std::string> render(std::string_view json) const;

 private:
  struct Piece {
    std::string text;               // literal text, when path is empty and !is_field
    bool is_field = false;          // an action: the value at `path`
    bool as_json = false;           // {{json ...}}: the value as JSON
    std::vector<std::string> path;  // {"readiness", "phase"}; empty: the item itself
  };
  std::vector<Piece> pieces_;
};

}  // namespace modbox
