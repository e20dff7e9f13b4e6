#pragma once
// Byte encodings: base64 (RFC 4648, with padding) and UTF-8 validation that tells a sequence cut at
// the end of a piece from an invalid one, which the API's JSON needs for command output; and the
// quoting of words for the shell commands the agent runs in sandboxes.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace modbox {

std::string base64_encode(std::string_view bytes);
/// The bytes, or nullopt for text that is not padded base64 of the standard alphabet.
std::optional<std::string> base64_decode(std::string_view text);

/// How much of `bytes` is whole UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past
/// U+10FFFF): the length of the longest prefix that ends where a character ends, when what follows
/// it is the start of one character cut short (at most 3 bytes); nullopt when `bytes` holds
/// anything else that is not UTF-8.
std::optional<std::size_t> utf8_whole_prefix(std::string_view bytes);

/// `word` as one word of a POSIX shell command, in single quotes ('\'' for a quote): no byte of it is special.
std::string shell_quote(std::string_view word);
/// argv as one command line for `sh -c`: each argument quoted as above, separated by spaces.
std::string shell_quote(const std::vector<std::string>& argv);

}  // namespace modbox
