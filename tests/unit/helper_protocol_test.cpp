// The agent ↔ helper wire protocol: every message survives a round trip, streams split anywhere
// reassemble, and frames that can never be valid are refused before their payload is buffered.

#include "common/helper_protocol.h"

#include <catch2/catch.hpp>

using namespace modbox;
using namespace modbox::helper;

namespace {

Message round_trip(const Message& message) {
  FrameDecoder decoder;
  decoder.feed(encode(message));
  auto decoded = decoder.next();
  REQUIRE(decoded.has_value());
  REQUIRE(decoded->has_value());
  CHECK(decoder.pending() == 0);
  return **decoded;
}

std::string frame(std::uint8_t type, std::string payload) {
  std::string bytes(1, static_cast<char>(type));
  auto size = static_cast<std::uint32_t>(payload.size());
  for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>((size >> shift) & 0xff));
  return bytes + payload;
}

ErrorKind decode_error(const std::string& bytes) {
  FrameDecoder decoder;
  decoder.feed(bytes);
  auto decoded = decoder.next();
  REQUIRE_FALSE(decoded.has_value());
  return decoded.error().kind;
}

}  // namespace

TEST_CASE("every message survives a round trip", "[helper-protocol]") {
  auto hello = std::get<Hello>(round_trip(Hello{protocol_version, 1, "/bin/bash"}));
  CHECK(hello.version == protocol_version);
  CHECK(hello.pid == 1);
  CHECK(hello.shell == "/bin/bash");

  auto exec = std::get<ExecRequest>(round_trip(ExecRequest{"echo 'hi'\nexit 3", "/tmp", 1500, 1 << 20}));
  CHECK(exec.command == "echo 'hi'\nexit 3");
  CHECK(exec.cwd == "/tmp");
  CHECK(exec.timeout_ms == 1500);
  CHECK(exec.output_cap == 1u << 20);

  std::string binary("a\0b\xff", 4);
  auto output = std::get<Output>(round_trip(Output{Stream::stderr_stream, binary}));
  CHECK(output.stream == Stream::stderr_stream);
  CHECK(output.data == binary);

  auto exit = std::get<Exit>(round_trip(Exit{137, "SIGKILL", true, true, "/bin/sh"}));
  CHECK(exit.exit_code == 137);
  CHECK(exit.signal == "SIGKILL");
  CHECK(exit.killed);
  CHECK(exit.truncated);
  CHECK(exit.shell == "/bin/sh");

  CHECK(std::get<Failure>(round_trip(Failure{"no shell"})).message == "no shell");
}

TEST_CASE("a stream split at any byte reassembles into the same frames", "[helper-protocol]") {
  std::string stream = encode(Hello{protocol_version, 7, "/bin/bash"}) +
                       encode(Output{Stream::stdout_stream, "hello\n"}) +
                       encode(Exit{0, "", false, false, "/bin/bash"});
  for (std::size_t split = 0; split <= stream.size(); ++split) {
    FrameDecoder decoder;
    std::vector<Message> messages;
    for (std::string_view part : {std::string_view(stream).substr(0, split), std::string_view(stream).substr(split)}) {
      decoder.feed(part);
      for (;;) {
        auto next = decoder.next();
        REQUIRE(next.has_value());
        if (!*next) break;
        messages.push_back(**next);
      }
    }
    REQUIRE(messages.size() == 3);
    CHECK(std::get<Output>(messages[1]).data == "hello\n");
    CHECK(std::get<Exit>(messages[2]).exit_code == 0);
  }
}

TEST_CASE("an incomplete frame waits for more bytes", "[helper-protocol]") {
  FrameDecoder decoder;
  std::string bytes = encode(Output{Stream::stdout_stream, "abc"});
  decoder.feed(bytes.substr(0, bytes.size() - 1));
  auto next = decoder.next();
  REQUIRE(next.has_value());
  CHECK_FALSE(next->has_value());
}

TEST_CASE("oversized frames are refused from their header alone", "[helper-protocol]") {
  // Only the 5-byte header arrives: the decoder must refuse without waiting for 4 GiB.
  CHECK(decode_error(frame(0x11, "").substr(0, 1) + std::string("\xff\xff\xff\xff", 4)) == ErrorKind::too_large);
  std::string header = frame(0x11, std::string(output_chunk_max + 6, 'x')).substr(0, header_size);
  CHECK(decode_error(header) == ErrorKind::too_large);
  std::string hello_header = frame(0x01, std::string(max_payload(FrameType::hello) + 1, 'x')).substr(0, header_size);
  CHECK(decode_error(hello_header) == ErrorKind::too_large);
}

TEST_CASE("garbage and malformed frames are refused", "[helper-protocol]") {
  SECTION("an unknown type") {
    CHECK(decode_error(frame(0x7f, "")) == ErrorKind::bad_request);
  }
  SECTION("HTTP instead of the protocol") {
    CHECK(decode_error("GET / HTTP/1.1\r\n\r\n") == ErrorKind::bad_request);
  }
  SECTION("a hello with the wrong magic") {
    std::string bytes = encode(Hello{protocol_version, 1, "/bin/sh"});
    bytes[9] = 'X';  // inside "modbox-helper"
    CHECK(decode_error(bytes) == ErrorKind::bad_request);
  }
  SECTION("a string longer than its frame") {
    CHECK(decode_error(frame(0x02, std::string("\x00\x00\x10\x00", 4) + "short")) == ErrorKind::bad_request);
  }
  SECTION("trailing bytes after the fields") {
    std::string payload = encode(Failure{"x"}).substr(header_size) + "extra";
    CHECK(decode_error(frame(0x02, payload)) == ErrorKind::bad_request);
  }
  SECTION("a failure of a kind that does not exist") {
    std::string payload = encode(Failure{"x", FailureKind::no_space}).substr(header_size);
    payload.back() = static_cast<char>(static_cast<std::uint8_t>(FailureKind::no_space) + 1);
    CHECK(decode_error(frame(0x02, payload)) == ErrorKind::bad_request);
  }
  SECTION("an exit code out of range or an unknown signal name") {
    CHECK(decode_error(encode(Exit{256, "", false, false, "/bin/sh"})) == ErrorKind::bad_request);
    CHECK(decode_error(encode(Exit{137, "SIGNOPE", false, false, "/bin/sh"})) == ErrorKind::bad_request);
  }
  SECTION("an output frame for a stream that does not exist") {
    CHECK(decode_error(frame(0x11, std::string("\x03\x00\x00\x00\x00", 5))) == ErrorKind::bad_request);
  }
  SECTION("an exec with a relative cwd, NUL in the command or no timeout") {
    CHECK(decode_error(encode(ExecRequest{"true", "tmp", 1000, 10})) == ErrorKind::bad_request);
    CHECK(decode_error(encode(ExecRequest{std::string("a\0b", 3), "/", 1000, 10})) == ErrorKind::bad_request);
    CHECK(decode_error(encode(ExecRequest{"true", "/", 0, 10})) == ErrorKind::bad_request);
  }
}

TEST_CASE("signal names map both ways", "[helper-protocol]") {
  CHECK(signal_name(9) == "SIGKILL");
  CHECK(signal_name(15) == "SIGTERM");
  CHECK(signal_name(36) == "SIGRTMIN+2");
  CHECK(signal_name(0).empty());
  CHECK(signal_name(99).empty());
  CHECK(signal_number("SIGKILL") == 9);
  CHECK(signal_number("SIGRTMIN+2") == 36);
  CHECK_FALSE(signal_number("KILL").has_value());
  CHECK_FALSE(signal_number("").has_value());
}

TEST_CASE("file messages survive a round trip", "[helper-protocol]") {
  auto failure = std::get<Failure>(round_trip(Failure{"no file x", FailureKind::not_found}));
  CHECK(failure.kind == FailureKind::not_found);
  CHECK(std::get<Failure>(round_trip(Failure{"disk full", FailureKind::no_space})).kind == FailureKind::no_space);
  auto upload = std::get<UploadRequest>(round_trip(UploadRequest{"/workspace/uploads", "a b.txt"}));
  CHECK(upload.directory == "/workspace/uploads");
  CHECK(upload.name == "a b.txt");
  CHECK(std::get<DownloadRequest>(round_trip(DownloadRequest{"/d", "n"})).name == "n");
  CHECK(std::get<RemoveRequest>(round_trip(RemoveRequest{"/d", "n"})).directory == "/d");
  auto list = std::get<ListRequest>(round_trip(ListRequest{"/d", "needle", 17}));
  CHECK(list.search == "needle");
  CHECK(list.limit == 17);
  std::string bytes(data_chunk_max, '\xff');
  CHECK(std::get<Data>(round_trip(Data{bytes})).bytes == bytes);
  CHECK(std::holds_alternative<End>(round_trip(End{})));
  auto info = std::get<FileInfo>(round_trip(FileInfo{"1-x", 5'000'000'000ull, 1'795'313'296'928}));
  CHECK(info.size == 5'000'000'000ull);
  CHECK(info.modified_ms == 1'795'313'296'928);
}

TEST_CASE("file frames with names that are not one plain component are refused", "[helper-protocol]") {
  for (const std::string& name :
       std::vector<std::string>{"", ".", "..", "a/b", std::string("a\0b", 3), std::string(256, 'x')}) {
    INFO(name);
    CHECK_FALSE(is_plain_file_name(name));
    // A download payload, [dir][name], with the bad name.
    std::string bad;
    auto put = [&bad](std::string_view text) {
      auto size = static_cast<std::uint32_t>(text.size());
      for (int shift = 24; shift >= 0; shift -= 8) bad.push_back(static_cast<char>((size >> shift) & 0xff));
      bad.append(text);
    };
    put("/d");
    put(name);
    CHECK(decode_error(frame(static_cast<std::uint8_t>(FrameType::download), bad)) != ErrorKind::internal);
    CHECK(decode_error(encode(UploadRequest{"/d", name})) != ErrorKind::internal);
  }
  // A directory must be absolute.
  CHECK(decode_error(encode(DownloadRequest{"relative", "ok"})) == ErrorKind::bad_request);
  // Data past its limit is refused from the header alone.
  CHECK(decode_error(frame(static_cast<std::uint8_t>(FrameType::data), std::string(data_chunk_max + 5, 'x'))) ==
        ErrorKind::too_large);
}

TEST_CASE("only an empty USER, root and 0 mean plain root", "[helper-protocol]") {
  CHECK(runs_as_root(""));
  CHECK(runs_as_root("root"));
  CHECK(runs_as_root("0"));
  CHECK_FALSE(runs_as_root("sandbox"));
  CHECK_FALSE(runs_as_root("1000"));
  CHECK_FALSE(runs_as_root("0:5"));  // root, but with another group: the helper switches the group
  CHECK_FALSE(runs_as_root("root:wheel"));
}

TEST_CASE("relay messages survive a round trip", "[helper-protocol][relay]") {
  CHECK(std::get<RelayOpen>(round_trip(RelayOpen{8080})).port == 8080);
  CHECK(std::get<RelayOpen>(round_trip(RelayOpen{1})).port == 1);
  CHECK(std::get<RelayOpen>(round_trip(RelayOpen{65535})).port == 65535);
  CHECK(std::holds_alternative<RelayReady>(round_trip(RelayReady{})));
  // The port is 4 bytes, big-endian, after the header.
  CHECK(encode(RelayOpen{0x1f90}) == frame(0x40, std::string("\x00\x00\x1f\x90", 4)));
  CHECK(encode(RelayReady{}) == frame(0x41, ""));
}

TEST_CASE("relay frames with a port out of range or the wrong size are refused", "[helper-protocol][relay]") {
  CHECK(decode_error(encode(RelayOpen{0})) == ErrorKind::bad_request);
  CHECK(decode_error(frame(0x40, std::string("\x00\x01\x00\x00", 4))) == ErrorKind::bad_request);  // 65536
  CHECK(decode_error(frame(0x40, std::string("\xff\xff\xff\xff", 4))) == ErrorKind::bad_request);
  CHECK(decode_error(frame(0x40, std::string("\x1f\x90", 2))) == ErrorKind::bad_request);  // truncated
  CHECK(decode_error(frame(0x40, "")) == ErrorKind::bad_request);
  // Longer than the type allows: refused from the header alone.
  CHECK(decode_error(frame(0x40, std::string("\x00\x00\x1f\x90\x00", 5))) == ErrorKind::too_large);
  CHECK(decode_error(frame(0x41, "x")) == ErrorKind::too_large);
  // The rest of the relay range is not (yet) a frame type.
  CHECK(decode_error(frame(0x42, "")) == ErrorKind::bad_request);
}

TEST_CASE("a decoder says how many bytes the next frame still needs", "[helper-protocol][relay]") {
  std::string bytes = encode(RelayReady{}) + "stream";
  FrameDecoder decoder;
  CHECK(decoder.missing() == header_size);
  decoder.feed(bytes.substr(0, 2));
  CHECK(decoder.missing() == header_size - 2);
  decoder.feed(bytes.substr(2, header_size - 2));
  CHECK(decoder.missing() == 0);
  auto ready = decoder.next();
  REQUIRE(ready.has_value());
  REQUIRE(ready->has_value());
  CHECK(std::holds_alternative<RelayReady>(**ready));

  std::string failure = encode(Failure{"nothing is listening"});
  decoder.feed(failure.substr(0, header_size + 3));
  auto next = decoder.next();
  REQUIRE(next.has_value());
  CHECK_FALSE(next->has_value());
  CHECK(decoder.missing() == failure.size() - header_size - 3);
  // What followed a frame stays unread, for whoever takes the stream over.
  decoder.feed(failure.substr(header_size + 3) + "after");
  REQUIRE(decoder.next().has_value());
  CHECK(decoder.unread() == "after");
}

TEST_CASE("background process messages survive a round trip", "[helper-protocol]") {
  auto start = std::get<ProcessStart>(round_trip(ProcessStart{"sleep 9 &\nwait", "/srv", {"A=1", "B_2=x=y", "C="}}));
  CHECK(start.command == "sleep 9 &\nwait");
  CHECK(start.cwd == "/srv");
  CHECK(start.env == std::vector<std::string>{"A=1", "B_2=x=y", "C="});
  CHECK(std::holds_alternative<ProcessList>(round_trip(ProcessList{})));

  ProcessInfo info;
  info.id = 7;
  info.state = ProcessState::exited;
  info.exit_code = 143;
  info.signal = "SIGTERM";
  info.started_ms = 1'700'000'000'123;
  info.ended_ms = 1'700'000'009'456;
  info.command = std::string(process_command_shown_max + 100, 'c');  // cut to what an info carries
  info.cwd = "/";
  info.stdin_open = true;
  info.stdout_bytes = 5'000'000'000;
  info.stderr_bytes = 3;
  info.stdout_dropped = 4'998'951'424;
  info.stderr_dropped = 0;
  auto decoded = std::get<ProcessInfo>(round_trip(info));
  CHECK(decoded.id == 7);
  CHECK(decoded.state == ProcessState::exited);
  CHECK(decoded.exit_code == 143);
  CHECK(decoded.signal == "SIGTERM");
  CHECK(decoded.started_ms == info.started_ms);
  CHECK(decoded.ended_ms == info.ended_ms);
  CHECK(decoded.command.size() == process_command_shown_max);
  CHECK(decoded.stdin_open);
  CHECK(decoded.stdout_bytes == 5'000'000'000);
  CHECK(decoded.stdout_dropped == 4'998'951'424);

  auto read = std::get<ProcessRead>(round_trip(ProcessRead{9, true}));
  CHECK(read.id == 9);
  CHECK(read.follow);
  auto input = std::get<ProcessStdin>(round_trip(ProcessStdin{3, std::string("a\0b", 3), true}));
  CHECK(input.data == std::string("a\0b", 3));
  CHECK(input.close);
  CHECK(std::get<ProcessSignal>(round_trip(ProcessSignal{3, 15})).signal == 15u);
}

TEST_CASE("malformed background process frames are refused", "[helper-protocol]") {
  // An environment entry that is not NAME=VALUE, a relative cwd, id 0, a signal that is none.
  CHECK(decode_error(encode(ProcessStart{"true", "/", {"=y"}})) == ErrorKind::bad_request);
  CHECK(decode_error(encode(ProcessStart{"true", "/", {"NOEQUALS"}})) == ErrorKind::bad_request);
  CHECK(decode_error(encode(ProcessStart{"true", "tmp", {}})) == ErrorKind::bad_request);
  CHECK(decode_error(encode(ProcessRead{0, false})) == ErrorKind::bad_request);
  CHECK(decode_error(encode(ProcessSignal{1, 0})) == ErrorKind::bad_request);
  CHECK(decode_error(encode(ProcessSignal{1, 65})) == ErrorKind::bad_request);
  ProcessInfo bad_state;
  bad_state.id = 1;
  bad_state.state = static_cast<ProcessState>(3);
  CHECK(decode_error(encode(bad_state)) == ErrorKind::bad_request);
  ProcessInfo bad_signal;
  bad_signal.id = 1;
  bad_signal.signal = "SIGNOPE";
  CHECK(decode_error(encode(bad_signal)) == ErrorKind::bad_request);
  // A list request carries nothing, and an oversized stdin write: both refused before their payload.
  CHECK(decode_error(frame(0x61, "x")) == ErrorKind::too_large);
  std::string oversized(1, static_cast<char>(FrameType::process_stdin));
  auto size = static_cast<std::uint32_t>(max_payload(FrameType::process_stdin) + 1);
  for (int shift = 24; shift >= 0; shift -= 8) oversized.push_back(static_cast<char>((size >> shift) & 0xff));
  CHECK(decode_error(oversized) == ErrorKind::too_large);
  CHECK(decode_error(frame(0x6f, "")) == ErrorKind::bad_request);
}

TEST_CASE("file watch frames survive a round trip and refuse what is not a watch", "[helper-protocol]") {
  auto open = std::get<WatchOpen>(round_trip(WatchOpen{"/home/user/project", true}));
  CHECK(open.path == "/home/user/project");
  CHECK(open.recursive);
  CHECK(std::holds_alternative<WatchReady>(round_trip(WatchReady{})));
  auto event = std::get<WatchEvent>(round_trip(WatchEvent{WatchKind::rename, "sub/ü.txt"}));
  CHECK(event.kind == WatchKind::rename);
  CHECK(event.name == "sub/ü.txt");
  CHECK(std::get<WatchEvent>(round_trip(WatchEvent{WatchKind::overflow, ""})).kind == WatchKind::overflow);

  auto string_field = [](std::string_view text) {
    std::string bytes;
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>((text.size() >> shift) & 0xff));
    return bytes + std::string(text);
  };
  CHECK(decode_error(frame(0x72, std::string(1, '\x07') + string_field("a"))) == ErrorKind::bad_request);  // no kind 7
  CHECK(decode_error(frame(0x72, std::string(1, '\x00') + string_field("a"))) == ErrorKind::bad_request);
  CHECK(decode_error(frame(0x70, string_field("") + std::string(1, '\x00'))) == ErrorKind::bad_request);  // no path
  CHECK(decode_error(frame(0x70, string_field("/x") + std::string(1, '\x02'))) == ErrorKind::bad_request);
  CHECK(decode_error(frame(0x71, "x")) == ErrorKind::too_large);  // WatchReady carries nothing
}
