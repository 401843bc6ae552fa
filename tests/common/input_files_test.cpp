// Every file qsweep reads goes through open_regular_file (FIFO, socket, device, directory
// → Error naming the file, never a hang) and every JSON file through JsonReader (one line
// naming the file, the key path and the kind wanted).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>

#include "common/errors.h"
#include "common/json_reader.h"
#include "common/mapped_file.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
using nlohmann::json;

// Runs `f` on another thread and expects an Error containing every fragment within 5 s.
// On a hang the FIFO is opened for writing (so the reader wakes) and the test fails.
void expect_prompt_error(const std::function<void()>& f, const std::string& path,
                         const std::string& fragment) {
  auto fut = std::async(std::launch::async, [&]() -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  });
  if (fut.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    const int fd = ::open(path.c_str(), O_RDWR | O_NONBLOCK);  // unblocks a FIFO reader
    const std::string got = fut.get();
    if (fd >= 0) ::close(fd);
    FAIL() << path << ": hung (then: " << got << ")";
  }
  const std::string msg = fut.get();
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
}

TEST(RegularFiles, FifoSocketDeviceAndDirectoryAreErrorsNotHangs) {
  const std::string dir = test::make_temp_dir("nonregular");
  const std::string fifo = dir + "/config.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string sock = dir + "/sock";
  const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
  const bool have_sock = ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  const std::vector<std::string> paths = {fifo, dir, "/dev/zero", "/dev/null"};
  for (const auto& p : paths) {
    SCOPED_TRACE(p);
    expect_prompt_error([&] { (void)read_text_file(p); }, p, "not a regular file");
    expect_prompt_error([&] { MappedFile m(p); }, p, "not a regular file");
    expect_prompt_error([&] { (void)read_json_file(p); }, p, "not a regular file");
  }
  if (have_sock) {  // open(2) itself refuses a socket (ENXIO)
    expect_prompt_error([&] { (void)read_text_file(sock); }, sock, "cannot open");
    expect_prompt_error([&] { MappedFile m(sock); }, sock, "cannot open");
  }
  ::close(s);
  // A regular file still reads byte for byte.
  const std::string f = dir + "/ok.txt";
  std::ofstream(f, std::ios::binary) << std::string("abc\0def", 7);
  EXPECT_EQ(read_text_file(f), std::string("abc\0def", 7));
  MappedFile m(f);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.data()), m.size()),
            std::string("abc\0def", 7));
}

struct KindCase {
  const char* doc;   // a JSON object holding key "k" (or a nested one)
  const char* what;  // which accessor
  const char* expect;
};

std::string error_of(const KindCase& c) {
  const json j = parse_json_text(c.doc, "F.json");
  const JsonReader r(j, "F.json");
  const std::string w = c.what;
  try {
    if (w == "int") (void)r.required<int64_t>("k");
    if (w == "int32") (void)r.required<int>("k");
    if (w == "bool") (void)r.required<bool>("k");
    if (w == "optbool") (void)r.optional<bool>("k", true);
    if (w == "string") (void)r.required<std::string>("k");
    if (w == "number") (void)r.required<double>("k");
    if (w == "float") (void)r.required<float>("k");
    if (w == "range") (void)r.required_int("k", 1, 8);
    if (w == "positive") (void)r.positive_number("k", 1.0);
    if (w == "object") (void)r.object("k");
    if (w == "nested") (void)r.object("q").required<int64_t>("group_size");
    if (w == "array") (void)r.array("k");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(JsonReader, WrongKindsNameFileKeyAndKind) {
  const KindCase cases[] = {
      {R"({"k": "128"})", "int", "F.json: key 'k' must be an integer, got \"128\""},
      {R"({"k": 128.5})", "int", "F.json: key 'k' must be an integer, got 128.5"},
      {R"({"k": 128.0})", "int", "F.json: key 'k' must be an integer, got 128.0"},
      {R"({"k": true})", "int", "F.json: key 'k' must be an integer, got true"},
      {R"({"k": 4294967296})", "int32", "F.json: key 'k' must be an integer at most 2147483647"},
      {R"({"k": -4294967296})", "int32", "F.json: key 'k' must be an integer in range"},
      {R"({"k": 18446744073709551615})", "int", "F.json: key 'k' must be an integer at most"},
      {R"({"k": "false"})", "bool", "F.json: key 'k' must be true or false, got \"false\""},
      {R"({"k": 0})", "bool", "F.json: key 'k' must be true or false, got 0"},
      {R"({"k": "true"})", "optbool", "F.json: key 'k' must be true or false, got \"true\""},
      {R"({"k": 5})", "string", "F.json: key 'k' must be a string, got 5"},
      {R"({"k": "1e-6"})", "number", "F.json: key 'k' must be a number, got \"1e-6\""},
      {R"({"k": 1e300})", "float", "F.json: key 'k' must be a finite number"},
      {R"({"k": 9})", "range", "F.json: key 'k' must be an integer in [1, 8], got 9"},
      {R"({"k": 0})", "range", "F.json: key 'k' must be an integer in [1, 8], got 0"},
      {R"({"k": 0})", "positive", "F.json: key 'k' must be a finite number in (0, "},
      {R"({"k": -1e-6})", "positive", "F.json: key 'k' must be a finite number in (0, "},
      {R"({"k": null})", "object", "F.json: key 'k' is missing (it is required)"},
      {R"({"k": [1]})", "object", "F.json: key 'k' must be an object, got [1]"},
      {R"({})", "int", "F.json: key 'k' is missing (it is required)"},
      {R"({"q": {"group_size": "128"}})", "nested",
       "F.json: key 'q.group_size' must be an integer, got \"128\""},
      {R"({"q": null})", "nested", "F.json: key 'q' is missing"},
      {R"({"k": {}})", "array", "F.json: key 'k' must be a list, got {}"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.doc);
    const std::string msg = error_of(c);
    EXPECT_EQ(msg.rfind(c.expect, 0), 0u) << "message: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos);
  }
}

TEST(JsonReader, GoodValuesAndDefaults) {
  const json j = parse_json_text(
      R"({"i": 7, "d": 7, "f": 1e-5, "b": false, "s": "x", "n": null, "o": {"p": 2}})", "F.json");
  const JsonReader r(j, "F.json");
  EXPECT_EQ(r.required<int64_t>("i"), 7);
  EXPECT_EQ(r.required<double>("d"), 7.0);  // an integer is a number
  EXPECT_FLOAT_EQ(r.required<float>("f"), 1e-5f);
  EXPECT_EQ(r.optional<bool>("b", true), false);
  EXPECT_EQ(r.required<std::string>("s"), "x");
  EXPECT_EQ(r.optional<int>("n", 3), 3);  // null is absent
  EXPECT_EQ(r.optional<int>("absent", 4), 4);
  EXPECT_EQ(r.object("o").required<int>("p"), 2);
  EXPECT_FALSE(r.optional_object("n").has_value());
}

TEST(JsonReader, RepeatedKeysAreRefusedWithTheirPath) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"a": 1, "a": 2})", "F.json: key 'a' appears twice"},
      {R"({"q": {"bits": 4, "bits": 8}})", "F.json: key 'q.bits' appears twice"},
      {R"({"x": [{"t": 1, "t": 1}]})", "appears twice"},
  };
  for (const auto& [doc, expect] : cases) {
    try {
      (void)parse_json_text(doc, "F.json");
      ADD_FAILURE() << doc << ": accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
  }
  // The same key in sibling objects is fine.
  EXPECT_NO_THROW((void)parse_json_text(R"({"a": {"k": 1}, "b": {"k": 2}})", "F.json"));
  EXPECT_THROW((void)parse_json_text("{oops", "F.json"), Error);
  EXPECT_THROW((void)parse_json_text(R"({"k": 1e999})", "F.json"), Error);  // overflow
}

}  // namespace
}  // namespace qsweep
