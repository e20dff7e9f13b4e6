// The upload route's multipart/form-data parser (agent/multipart.h), on any body and Content-Type.
// Input: [piece size byte][Content-Type]\n[body]. Properties: what the parser reports (the parts, each
// part's content, whether the body was well formed and complete) is the same whether the body comes in
// one read or in pieces of any size; a part's headers are never larger than the parser's limit.

#include <cstdint>
#include <string>
#include <vector>

#include "agent/multipart.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

struct Transcript {
  std::vector<modbox::MultipartPart> parts;
  std::vector<std::string> contents;
  bool well_formed = true;
  bool complete = false;

  bool operator==(const Transcript& other) const {
    if (parts.size() != other.parts.size()) return false;
    for (std::size_t i = 0; i < parts.size(); ++i)
      if (parts[i].name != other.parts[i].name || parts[i].filename != other.parts[i].filename ||
          parts[i].content_type != other.parts[i].content_type)
        return false;
    return contents == other.contents && well_formed == other.well_formed && complete == other.complete;
  }
};

Transcript parse(const std::string& boundary, std::string_view body, std::size_t piece) {
  Transcript transcript;
  modbox::MultipartParser parser(
      boundary,
      [&](const modbox::MultipartPart& part) {
        FUZZ_CHECK(part.name.size() + part.filename.size() + part.content_type.size() <=
                   modbox::MultipartParser::headers_max);
        transcript.parts.push_back(part);
        transcript.contents.emplace_back();
        return true;
      },
      [&](std::string_view bytes) {
        FUZZ_CHECK(!transcript.contents.empty());  // content only ever comes inside a part
        transcript.contents.back().append(bytes);
        return true;
      });
  for (std::size_t at = 0; at < body.size() && transcript.well_formed; at += piece)
    transcript.well_formed = parser.feed(body.substr(at, piece));
  transcript.complete = parser.complete();
  return transcript;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto [piece, input] = modbox::fuzz::cut(data, size);
  std::size_t newline = input.find('\n');
  if (newline == std::string_view::npos) {
    (void)modbox::multipart_boundary(input);
    return 0;
  }
  auto boundary = modbox::multipart_boundary(input.substr(0, newline));
  if (!boundary) return 0;
  FUZZ_CHECK(!boundary->empty() && boundary->size() <= 70);
  std::string_view body = input.substr(newline + 1);
  Transcript whole = parse(*boundary, body, body.size() + 1);
  Transcript cut = parse(*boundary, body, piece);
  FUZZ_CHECK(whole == cut);
  FUZZ_CHECK(parse(*boundary, body, 1) == whole);
  return 0;
}
