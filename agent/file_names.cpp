#include "agent/file_names.h"

#include <array>
#include <cctype>
#include <utility>

#include "common/helper_protocol.h"

namespace modbox {

Result<std::string> safe_upload_name(std::string_view client_name) {
  std::size_t slash = client_name.find_last_of("/\\");
  std::string_view base = slash == std::string_view::npos ? client_name : client_name.substr(slash + 1);
  std::string name;
  for (char c : base)
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) name.push_back(c);
  if (name.empty() || name == "." || name == "..")
    return fail(ErrorKind::bad_request, "the uploaded file has no usable name ('" +
                                            std::string(client_name.substr(0, 100)) +
                                            "'): give the multipart part a filename");
  // The stored name is "{13-digit epoch-ms}-{name}" and must stay within NAME_MAX.
  constexpr std::size_t name_room = helper::name_max - 14 - 6;
  if (name.size() > name_room)
    return fail(ErrorKind::bad_request,
                "the file name is longer than " + std::to_string(name_room) + " bytes; rename the file");
  return name;
}

std::string attachment_disposition(std::string_view filename) {
  // A plain ASCII fallback for old clients, and the exact name in RFC 5987 form; neither can
  // carry a quote, a backslash or a line break.
  std::string fallback;
  std::string encoded;
  static constexpr char hex[] = "0123456789ABCDEF";
  for (char c : filename) {
    auto byte = static_cast<unsigned char>(c);
    bool printable = byte >= 0x20 && byte < 0x7f && c != '"' && c != '\\';
    fallback.push_back(printable ? c : '_');
    bool attr_char = (byte >= '0' && byte <= '9') || (byte >= 'a' && byte <= 'z') || (byte >= 'A' && byte <= 'Z') ||
                     std::string_view("!#$&+-.^_`|~").find(c) != std::string_view::npos;
    if (attr_char) {
      encoded.push_back(c);
    } else {
      encoded += '%';
      encoded += hex[byte >> 4];
      encoded += hex[byte & 0xf];
    }
  }
  return "attachment; filename=\"" + fallback + "\"; filename*=UTF-8''" + encoded;
}

std::string mime_type_for(std::string_view filename) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 32> types = {{
      {"txt", "text/plain"},
      {"md", "text/markdown"},
      {"csv", "text/csv"},
      {"html", "text/html"},
      {"htm", "text/html"},
      {"css", "text/css"},
      {"js", "text/javascript"},
      {"mjs", "text/javascript"},
      {"ts", "text/x-typescript"},
      {"py", "text/x-python"},
      {"sh", "application/x-sh"},
      {"json", "application/json"},
      {"xml", "application/xml"},
      {"yaml", "application/yaml"},
      {"yml", "application/yaml"},
      {"pdf", "application/pdf"},
      {"zip", "application/zip"},
      {"gz", "application/gzip"},
      {"tar", "application/x-tar"},
      {"wasm", "application/wasm"},
      {"png", "image/png"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},
      {"svg", "image/svg+xml"},
      {"webp", "image/webp"},
      {"ico", "image/vnd.microsoft.icon"},
      {"mp3", "audio/mpeg"},
      {"wav", "audio/wav"},
      {"mp4", "video/mp4"},
      {"webm", "video/webm"},
      {"ipynb", "application/x-ipynb+json"},
  }};
  std::size_t dot = filename.rfind('.');
  if (dot != std::string_view::npos && dot + 1 < filename.size()) {
    std::string extension;
    for (char c : filename.substr(dot + 1))
      extension.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    for (const auto& [known, type] : types)
      if (extension == known) return std::string(type);
  }
  return "application/octet-stream";
}

std::string original_name_of(std::string_view stored_name) {
  std::size_t dash = stored_name.find('-');
  if (dash == std::string_view::npos || dash == 0) return std::string(stored_name);
  for (char c : stored_name.substr(0, dash))
    if (c < '0' || c > '9') return std::string(stored_name);
  return std::string(stored_name.substr(dash + 1));
}

}  // namespace modbox
