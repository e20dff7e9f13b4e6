// The event stream of a command's output: text that never splits inside a UTF-8 character, base64
// for bytes that are not UTF-8, and a reader that gets the same bytes back however the stream is cut.

#include "common/output_events.h"

#include <catch2/catch.hpp>

#include "common/encoding.h"

using namespace modbox;

namespace {

/// The events in `text`, as "name data" strings.
std::vector<std::string> events_of(const std::string& text) {
  EventReader reader;
  reader.feed(text);
  std::vector<std::string> events;
  while (auto event = reader.next()) events.push_back(event->name + " " + event->data);
  return events;
}

}  // namespace

TEST_CASE("base64 both ways", "[output-events]") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode(std::string("\0\xff\xfe", 3)) == "AP/+");
  for (std::string bytes : {std::string(), std::string("a"), std::string("\x80\x81", 2), std::string(1000, '\xee')})
    CHECK(base64_decode(base64_encode(bytes)) == bytes);
  CHECK_FALSE(base64_decode("Zg=").has_value());
  CHECK_FALSE(base64_decode("Z===").has_value());
  CHECK_FALSE(base64_decode("Zm9v!A==").has_value());
  CHECK_FALSE(base64_decode("Zg==Zm8=").has_value());
}

TEST_CASE("whole UTF-8 is told from a character cut at the end and from bytes that are not UTF-8", "[output-events]") {
  CHECK(utf8_whole_prefix("plain") == 5u);
  CHECK(utf8_whole_prefix("h\xc3\xa9") == 3u);        // é
  CHECK(utf8_whole_prefix("h\xc3") == 1u);            // é cut after its first byte
  CHECK(utf8_whole_prefix("\xe2\x82") == 0u);         // € cut
  CHECK(utf8_whole_prefix("\xf0\x9f\x98") == 0u);     // an emoji cut
  CHECK(utf8_whole_prefix("\xf0\x9f\x98\x80") == 4u);
  CHECK_FALSE(utf8_whole_prefix("\xff").has_value());
  CHECK_FALSE(utf8_whole_prefix("\xc3(").has_value());       // a lead byte without its continuation
  CHECK_FALSE(utf8_whole_prefix("\xc0\xaf").has_value());    // overlong
  CHECK_FALSE(utf8_whole_prefix("\xed\xa0\x80").has_value());  // a surrogate
  CHECK_FALSE(utf8_whole_prefix("\xf4\x90\x80\x80").has_value());  // past U+10FFFF
  CHECK_FALSE(utf8_whole_prefix("\x80").has_value());
}

TEST_CASE("output becomes text events, with a cut character held for the next piece", "[output-events]") {
  OutputEventWriter writer;
  CHECK(events_of(writer.add(OutputStream::stdout_stream, "line\n")) ==
        std::vector<std::string>{R"(stdout {"data":"line\n"})"});
  // "é" cut between two pieces: nothing of it goes until it is whole.
  CHECK(events_of(writer.add(OutputStream::stdout_stream, "caf\xc3")) == std::vector<std::string>{R"(stdout {"data":"caf"})"});
  CHECK(writer.add(OutputStream::stderr_stream, "\xe2\x82").empty());  // streams hold apart
  CHECK(events_of(writer.add(OutputStream::stdout_stream, "\xa9!")) ==
        std::vector<std::string>{"stdout {\"data\":\"\xc3\xa9!\"}"});
  CHECK(events_of(writer.add(OutputStream::stderr_stream, "\xac")) == std::vector<std::string>{"stderr {\"data\":\"\xe2\x82\xac\"}"});
  CHECK(writer.flush().empty());
}

TEST_CASE("bytes that are not UTF-8 go as base64, and a cut character left at the end is flushed", "[output-events]") {
  OutputEventWriter writer;
  std::string binary("\x89PNG\r\n\x1a\n\0\xff", 10);
  auto events = events_of(writer.add(OutputStream::stdout_stream, binary));
  REQUIRE(events.size() == 1);
  CHECK(events[0] == "stdout {\"data_base64\":\"" + base64_encode(binary) + "\"}");
  CHECK(writer.add(OutputStream::stdout_stream, "ok\xe2").size() > 0);
  CHECK(events_of(writer.flush()) == std::vector<std::string>{R"(stdout {"data_base64":"4g=="})"});
}

TEST_CASE("a reader gets every stream's bytes back, however the stream is cut", "[output-events]") {
  OutputEventWriter writer;
  std::string original = "text \xc3\xa9 then \xff binary\n";
  std::string stream;
  for (char c : original) stream += writer.add(OutputStream::stdout_stream, std::string(1, c));
  stream += writer.flush();
  stream += event_text("exit", R"({"exitCode":0})");
  for (std::size_t cut : {std::size_t{1}, std::size_t{7}, stream.size()}) {
    EventReader reader;
    std::string bytes;
    std::optional<EventReader::Event> last;
    for (std::size_t at = 0; at < stream.size(); at += cut) {
      reader.feed(std::string_view(stream).substr(at, cut));
      while (auto event = reader.next()) {
        if (event->name == "stdout") bytes += *output_event_bytes(event->data);
        last = event;
      }
    }
    CHECK(bytes == original);
    REQUIRE(last.has_value());
    CHECK(last->name == "exit");
  }
}

TEST_CASE("the reader skips comments and joins data lines", "[output-events]") {
  CHECK(events_of(": keep-alive\n\nevent: a\ndata: 1\ndata: 2\n\ndata: plain\r\n\r\n") ==
        std::vector<std::string>{"a 1\n2", "message plain"});
  CHECK_FALSE(output_event_bytes(R"({"other":1})").has_value());
  CHECK_FALSE(output_event_bytes(R"({"data_base64":"!!"})").has_value());
  CHECK(error_event_data("no \"helper\"") == R"({"detail":"no \"helper\""})");
}
