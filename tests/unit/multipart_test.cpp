// The streaming multipart/form-data parser: any split of the body gives the same parts and
// content, malformed bodies are refused, and memory stays bounded whatever arrives.

#include "agent/multipart.h"

#include <catch2/catch.hpp>
#include <random>

using namespace modbox;

namespace {

struct Parsed {
  std::vector<MultipartPart> parts;
  std::vector<std::string> contents;
  bool fed = true;
  bool complete = false;
};

Parsed parse(std::string_view body, std::size_t piece, std::string_view boundary = "XyZ") {
  Parsed parsed;
  MultipartParser parser(
      boundary,
      [&](const MultipartPart& part) {
        parsed.parts.push_back(part);
        parsed.contents.emplace_back();
        return true;
      },
      [&](std::string_view bytes) {
        parsed.contents.back().append(bytes);
        return true;
      });
  for (std::size_t at = 0; at < body.size() && parsed.fed; at += piece)
    parsed.fed = parser.feed(body.substr(at, piece));
  parsed.complete = parser.complete();
  return parsed;
}

const std::string body =
    "preamble to ignore\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"note\"\r\n"
    "\r\n"
    "hello\r\n"
    "--XyZ  \r\n"
    "content-disposition: form-data; name=\"file\"; filename=\"a \\\"quoted\\\"; name.txt\"\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "line one\r\n--XyQ not a delimiter\r\n--Xy\r\nend\r\n"
    "--XyZ--\r\n"
    "epilogue";

}  // namespace

TEST_CASE("multipart: any split of a body gives the same parts", "[multipart]") {
  for (std::size_t piece :
       {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7}, std::size_t{64}, body.size()}) {
    INFO("pieces of " << piece);
    auto parsed = parse(body, piece);
    CHECK(parsed.fed);
    CHECK(parsed.complete);
    REQUIRE(parsed.parts.size() == 2);
    CHECK(parsed.parts[0].name == "note");
    CHECK(parsed.parts[0].filename.empty());
    CHECK(parsed.contents[0] == "hello");
    CHECK(parsed.parts[1].name == "file");
    CHECK(parsed.parts[1].filename == "a \"quoted\"; name.txt");
    CHECK(parsed.parts[1].content_type == "text/plain");
    CHECK(parsed.contents[1] == "line one\r\n--XyQ not a delimiter\r\n--Xy\r\nend");
  }
}

TEST_CASE("multipart: a body may open with its delimiter, and random binary content survives", "[multipart]") {
  std::mt19937 random(3);
  std::string content(300'000, '\0');
  for (auto& byte : content) byte = static_cast<char>(random() & 0xff);
  std::string binary =
      "--b1\r\nContent-Disposition: form-data; name=file; filename=x.bin\r\n\r\n" + content + "\r\n--b1--";
  for (std::size_t piece : {std::size_t{4096}, std::size_t{1000}, std::size_t{65536}}) {
    auto parsed = parse(binary, piece, "b1");
    CHECK(parsed.complete);
    REQUIRE(parsed.parts.size() == 1);
    CHECK(parsed.parts[0].filename == "x.bin");
    CHECK(parsed.contents[0] == content);
  }
}

TEST_CASE("multipart: malformed bodies are refused, cut-off ones incomplete", "[multipart]") {
  auto refused = [](const std::string& text) {
    auto parsed = parse(text, 5);
    return !parsed.fed;
  };
  CHECK(refused("--XyZ\r\nno colon here\r\n\r\nx\r\n--XyZ--"));
  CHECK(refused("--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--"));  // no Content-Disposition
  CHECK(refused("--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--XyZ--"));
  CHECK(refused("--XyZ\r\nContent-Disposition: form-data; name=\"open\r\n\r\nx\r\n--XyZ--"));
  CHECK(refused("--XyZgarbage\r\n"));
  auto cut = parse("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\npartial content", 4);
  CHECK(cut.fed);
  CHECK_FALSE(cut.complete);
  CHECK(cut.contents.at(0) == "partial c");  // the rest could still be a delimiter's start
}

TEST_CASE("multipart: memory stays bounded whatever arrives", "[multipart]") {
  SECTION("a preamble that never ends") {
    MultipartParser parser(
        "XyZ", [](const MultipartPart&) { return true; }, [](std::string_view) { return true; });
    for (int i = 0; i < 10000; ++i) REQUIRE(parser.feed(std::string(4096, 'a')));
    CHECK_FALSE(parser.complete());
  }
  SECTION("headers that never end") {
    MultipartParser parser(
        "XyZ", [](const MultipartPart&) { return true; }, [](std::string_view) { return true; });
    REQUIRE(parser.feed("--XyZ\r\n"));
    bool refused = false;
    for (int i = 0; i < 100 && !refused; ++i) refused = !parser.feed("X-Header: " + std::string(4096, 'h') + "\r\n");
    CHECK(refused);
  }
  SECTION("neither a line break nor -- after a delimiter") {
    MultipartParser parser(
        "XyZ", [](const MultipartPart&) { return true; }, [](std::string_view) { return true; });
    CHECK_FALSE(parser.feed("--XyZ" + std::string(4096, 'z')));
  }
}

TEST_CASE("multipart: the boundary comes from the Content-Type", "[multipart]") {
  CHECK(multipart_boundary("multipart/form-data; boundary=abc") == "abc");
  CHECK(multipart_boundary("Multipart/Form-Data; charset=utf-8; BOUNDARY=\"a b;c\"") == "a b;c");
  CHECK_FALSE(multipart_boundary("multipart/form-data").has_value());
  CHECK_FALSE(multipart_boundary("multipart/mixed; boundary=abc").has_value());
  CHECK_FALSE(multipart_boundary("application/json").has_value());
  CHECK_FALSE(multipart_boundary("multipart/form-data; boundary=").has_value());
  CHECK_FALSE(multipart_boundary("multipart/form-data; boundary=" + std::string(71, 'b')).has_value());
}

TEST_CASE("multipart: how a body is cut into reads never decides whether it is accepted", "[multipart]") {
  // Found by fuzzing (tests/fuzz/fuzz_multipart.cpp): transport padding and a header block at their
  // limits were accepted in one read and refused byte by byte.
  auto part = [](std::string_view padding, std::string_view header_fill) {
    return "--XyZ" + std::string(padding) + "\r\nContent-Disposition: form-data; name=\"f\"" +
           std::string(header_fill) + "\r\n\r\nx\r\n--XyZ--\r\n";
  };
  // A header block of exactly headers_max bytes: the disposition, then a header that fills the rest.
  const std::string disposition = "Content-Disposition: form-data; name=\"f\"";
  const std::string fill_name = "\r\nX-Fill: ";
  std::string at_limit_fill =
      fill_name + std::string(MultipartParser::headers_max - disposition.size() - fill_name.size(), 'a');
  for (const auto& [sample, accepted] : std::vector<std::pair<std::string, bool>>{
           {part(std::string(256, ' '), ""), true},
           {part(std::string(257, ' '), ""), false},
           {part(std::string(300, '\t'), ""), false},
           {part("", at_limit_fill), true},
           {part("", at_limit_fill + "a"), false},
       }) {
    for (std::size_t piece : {std::size_t{1}, std::size_t{5}, sample.size()}) {
      INFO("pieces of " << piece << ", " << sample.size() << " bytes");
      auto parsed = parse(sample, piece);
      CHECK(parsed.fed == accepted);
      CHECK(parsed.complete == accepted);
    }
  }
}
