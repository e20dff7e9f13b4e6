// The rules for file names (agent/file_names.h and the helper's is_plain_file_name), on any name a
// client sends. Properties: an accepted upload name is one plain path component with no control
// character, short enough to be stored with its time prefix, and shown back unchanged; a download's
// Content-Disposition carries no quote, backslash or line break that could end it early.

#include <cstdint>
#include <string>

#include "agent/file_names.h"
#include "common/helper_protocol.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view name(reinterpret_cast<const char*>(data), size);

  if (auto safe = modbox::safe_upload_name(name)) {
    FUZZ_CHECK(!safe->empty() && *safe != "." && *safe != "..");
    FUZZ_CHECK(safe->find_first_of("/\\") == std::string::npos);
    for (char c : *safe) FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
    // The helper stores it as "{13-digit epoch-ms}-{name}", which must be one plain component too.
    std::string stored = "1748000000000-" + *safe;
    FUZZ_CHECK(modbox::helper::is_plain_file_name(stored));
    FUZZ_CHECK(modbox::original_name_of(stored) == *safe);
    FUZZ_CHECK(modbox::safe_upload_name(*safe).value() == *safe);  // reducing twice changes nothing
  } else {
    FUZZ_CHECK(!safe.error().message.empty());
  }

  std::string disposition = modbox::attachment_disposition(name);
  FUZZ_CHECK(disposition.find_first_of("\r\n") == std::string::npos);
  constexpr std::string_view opening = "attachment; filename=\"";
  FUZZ_CHECK(disposition.starts_with(opening));
  std::size_t closing = disposition.find('"', opening.size());
  FUZZ_CHECK(closing != std::string::npos);
  // The quoted name ends at the first quote after it, and nothing but the RFC 5987 form follows.
  constexpr std::string_view extended = "\"; filename*=UTF-8''";
  FUZZ_CHECK(std::string_view(disposition).substr(closing).starts_with(extended));
  std::string_view encoded = std::string_view(disposition).substr(closing + extended.size());
  FUZZ_CHECK(encoded.find_first_of("\"\\; \t") == std::string_view::npos);

  std::string type = modbox::mime_type_for(name);
  FUZZ_CHECK(type.find('/') != std::string::npos && type.find_first_of("\r\n") == std::string::npos);
  (void)modbox::original_name_of(name);
  (void)modbox::helper::is_plain_file_name(name);
  return 0;
}
