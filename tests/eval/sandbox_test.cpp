// The sandbox that executes generated code: limits, isolation, cleanup, concurrency.
#include "eval/sandbox.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "common/errors.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

namespace fs = std::filesystem;

SandboxOptions quick() {
  SandboxOptions o;
  o.timeout_seconds = 10;
  return o;
}

/// Tests that need the full isolation skip (loudly) where this machine cannot provide it.
#define REQUIRE_NAMESPACES()                                                          \
  do {                                                                                \
    const SandboxProbe probe = probe_sandbox(quick());                                \
    if (!probe.usable) GTEST_SKIP() << "sandbox unavailable here: " << probe.message; \
  } while (0)

/// A normal program after a hostile one: the sandbox is still usable.
void expect_next_program_passes() {
  const SandboxResult r = run_sandboxed("print(sum(range(10)))\n", quick());
  EXPECT_EQ(r.status, SandboxStatus::ok) << r.message << r.stderr_tail;
  EXPECT_EQ(r.stdout_text, "45\n");
}

TEST(Sandbox, NormalProgramPassesWithOutputAndFullIsolation) {
  REQUIRE_NAMESPACES();
  const SandboxResult r =
      run_sandboxed("import sys\nprint('hello')\nprint('err', file=sys.stderr)\n", quick());
  ASSERT_EQ(r.status, SandboxStatus::ok) << r.message << r.stderr_tail;
  EXPECT_TRUE(r.passed());
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.stdout_text, "hello\n");
  EXPECT_EQ(r.stderr_tail, "err\n");
  EXPECT_EQ(r.isolation.rfind("namespaces", 0), 0u) << r.isolation;
  EXPECT_GT(r.seconds, 0);
  std::printf("isolation: %s, %.3f s for a trivial program\n", r.isolation.c_str(), r.seconds);
}

TEST(Sandbox, FailingAssertionAndSyntaxErrorAreFailed) {
  REQUIRE_NAMESPACES();
  SandboxResult r = run_sandboxed("assert 1 + 1 == 3, 'math'\n", quick());
  EXPECT_EQ(r.status, SandboxStatus::failed);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.stderr_tail.find("AssertionError: math"), std::string::npos) << r.stderr_tail;
  r = run_sandboxed("def f(:\n", quick());
  EXPECT_EQ(r.status, SandboxStatus::failed);
  EXPECT_NE(r.stderr_tail.find("SyntaxError"), std::string::npos) << r.stderr_tail;
  r = run_sandboxed("import sys\nsys.exit(7)\n", quick());
  EXPECT_EQ(r.status, SandboxStatus::failed);
  EXPECT_EQ(r.exit_code, 7);
}

TEST(Sandbox, InfiniteLoopTimesOut) {
  REQUIRE_NAMESPACES();
  SandboxOptions o = quick();
  o.timeout_seconds = 1.5;
  const SandboxResult r = run_sandboxed("while True:\n    pass\n", o);
  EXPECT_EQ(r.status, SandboxStatus::timeout) << to_string(r.status) << " " << r.message;
  EXPECT_FALSE(r.passed());
  EXPECT_GE(r.seconds, 1.4);
  EXPECT_LT(r.seconds, 2.8);  // the wall clock, not the CPU limit (3 s), stopped it
  expect_next_program_passes();
}

TEST(Sandbox, SleepingProgramTimesOutOnWallClock) {
  REQUIRE_NAMESPACES();
  SandboxOptions o = quick();
  o.timeout_seconds = 1;
  const SandboxResult r = run_sandboxed("import time\ntime.sleep(60)\n", o);
  EXPECT_EQ(r.status, SandboxStatus::timeout);
  EXPECT_LT(r.seconds, 3.0);
}

TEST(Sandbox, UnboundedAllocationHitsTheMemoryLimit) {
  REQUIRE_NAMESPACES();
  SandboxOptions o = quick();
  o.memory_bytes = int64_t{256} << 20;
  const SandboxResult r =
      run_sandboxed("blocks = []\nwhile True:\n    blocks.append(bytearray(10**7))\n", o);
  EXPECT_EQ(r.status, SandboxStatus::memory) << to_string(r.status) << " " << r.stderr_tail;
  EXPECT_FALSE(r.passed());
  // The limit is the one asked for: 300 MB fits in 1 GiB, not in 256 MiB.
  const std::string big = "x = bytearray(300 * 2**20)\nprint(len(x) >> 20)\n";
  EXPECT_EQ(run_sandboxed(big, o).status, SandboxStatus::memory);
  o.memory_bytes = int64_t{1} << 30;
  const SandboxResult fits = run_sandboxed(big, o);
  EXPECT_EQ(fits.status, SandboxStatus::ok) << fits.stderr_tail;
  EXPECT_EQ(fits.stdout_text, "300\n");
  expect_next_program_passes();
}

/// A TCP socket listening on 127.0.0.1 (outside the sandbox); returns the fd and port.
std::pair<int, int> listen_locally() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::listen(fd, 4), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return {fd, ntohs(a.sin_port)};
}

std::string connect_program(const std::string& host, int port) {
  return cat("import socket\n", "s = socket.create_connection(('", host, "', ", port,
             "), timeout=3)\n", "print('connected')\n");
}

void expect_no_network(const SandboxOptions& o) {
  const auto [fd, port] = listen_locally();
  // The test's own listener is reachable from here ...
  {
    const SandboxResult probe = run_sandboxed("print('x')\n", o);  // warm-up: sandbox works
    ASSERT_TRUE(probe.passed()) << probe.message;
  }
  for (const auto& [host, p] :
       std::vector<std::pair<std::string, int>>{{"1.1.1.1", 80}, {"127.0.0.1", port}}) {
    const SandboxResult r = run_sandboxed(connect_program(host, p), o);
    EXPECT_EQ(r.status, SandboxStatus::failed) << host << ": " << to_string(r.status);
    EXPECT_EQ(r.stdout_text.find("connected"), std::string::npos) << host;
    EXPECT_NE(r.stderr_tail.find("Error"), std::string::npos) << r.stderr_tail;
  }
  pollfd p{fd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "the listener received a connection from the sandbox";
  ::close(fd);
}

TEST(Sandbox, NetworkIsUnreachable) {
  REQUIRE_NAMESPACES();
  expect_no_network(quick());
  expect_next_program_passes();
}

std::string write_program(const std::string& path) {
  return cat("with open('", path, "', 'w') as f:\n    f.write('escaped')\n", "print('wrote')\n");
}

void expect_no_writes_outside(const SandboxOptions& o) {
  const std::string own_dir = test::make_temp_dir("sandbox-escape");
  ::chmod(own_dir.c_str(), 0777);  // permissions would allow it: the sandbox must not
  const std::vector<std::string> targets = {cat("/tmp/qsweep-escape-", ::getpid()),
                                            own_dir + "/escape.txt", "/dev/shm/qsweep-escape"};
  for (const auto& t : targets) {
    fs::remove(t);
    const SandboxResult r = run_sandboxed(write_program(t), o);
    EXPECT_EQ(r.status, SandboxStatus::failed) << t << ": " << to_string(r.status);
    EXPECT_EQ(r.stdout_text.find("wrote"), std::string::npos) << t;
    EXPECT_FALSE(fs::exists(t)) << t << " was written from inside the sandbox";
    fs::remove(t);
  }
  fs::remove_all(own_dir);
  // Writing in its own directory is fine, and that directory is gone afterwards.
  const SandboxResult r = run_sandboxed(
      "import os\nopen('scratch.txt', 'w').write('x' * 1000)\nos.mkdir('d')\n"
      "os.chmod('d', 0)\nprint(os.getcwd())\n",
      o);
  ASSERT_EQ(r.status, SandboxStatus::ok) << r.message << r.stderr_tail;
  const std::string cwd = r.stdout_text.substr(0, r.stdout_text.find('\n'));
  EXPECT_NE(cwd.find("qsweep-sbx-"), std::string::npos) << cwd;
  EXPECT_FALSE(fs::exists(cwd)) << "work directory left behind: " << cwd;
}

TEST(Sandbox, NoWritesOutsideTheWorkDirectory) {
  REQUIRE_NAMESPACES();
  expect_no_writes_outside(quick());
  expect_next_program_passes();
}

TEST(Sandbox, ForkBombIsContained) {
  REQUIRE_NAMESPACES();
  SandboxOptions o = quick();
  o.timeout_seconds = 2;
  const SandboxResult r = run_sandboxed(
      "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
      o);
  EXPECT_FALSE(r.passed());
  EXPECT_TRUE(r.status == SandboxStatus::timeout || r.status == SandboxStatus::failed)
      << to_string(r.status);
  EXPECT_LT(r.seconds, 6.0);
  expect_next_program_passes();
  // The process limit itself: fork() fails before 100 sleeping children exist.
  o.max_processes = 16;
  const SandboxResult counted = run_sandboxed(
      "import os, time\nn = 0\nfor i in range(100):\n    try:\n        pid = os.fork()\n"
      "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n"
      "        os._exit(0)\n    n += 1\nprint(n)\n",
      o);
  ASSERT_EQ(counted.status, SandboxStatus::ok) << counted.stderr_tail;
  const int forked = std::stoi(counted.stdout_text);
  EXPECT_GE(forked, 1);
  EXPECT_LT(forked, 16);
  EXPECT_LT(counted.seconds, 5.0);  // the sleeping children died with the program
}

/// Processes whose command line contains `marker`.
int count_processes_with(const std::string& marker) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    std::ifstream f(e.path() / "cmdline", std::ios::binary);
    std::string s((std::istreambuf_iterator<char>(f)), {});
    if (s.find(marker) != std::string::npos) ++n;
  }
  return n;
}

TEST(Sandbox, BackgroundProcessesDieWithTheProgram) {
  REQUIRE_NAMESPACES();
  const std::string marker = cat("qsweep-marker-", ::getpid());
  const std::string program =
      cat("import os, sys\n", "if os.fork() == 0:\n", "    os.setsid()\n",
          "    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(30)', '",
          marker, "'])\n", "print('parent done')\n");
  const SandboxResult r = run_sandboxed(program, quick());
  EXPECT_EQ(r.status, SandboxStatus::ok) << r.message << r.stderr_tail;
  EXPECT_LT(r.seconds, 5.0);
  int left = 0;
  for (int i = 0; i < 20; ++i) {
    left = count_processes_with(marker);
    if (left == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(left, 0) << "a process started by the program outlived it";
}

TEST(Sandbox, OutputIsBounded) {
  REQUIRE_NAMESPACES();
  SandboxOptions o = quick();
  o.max_output_bytes = 1000;
  const SandboxResult r =
      run_sandboxed("import sys\nprint('a' * 100000)\nsys.stderr.write('b' * 5000 + 'END')\n", o);
  EXPECT_EQ(r.status, SandboxStatus::ok);
  EXPECT_EQ(r.stdout_text, std::string(1000, 'a'));
  EXPECT_EQ(r.stderr_tail.size(), 1000u);
  EXPECT_EQ(r.stderr_tail.substr(r.stderr_tail.size() - 3), "END");
  EXPECT_TRUE(r.output_truncated);
}

TEST(Sandbox, ManySandboxesInParallel) {
  REQUIRE_NAMESPACES();
  constexpr int kThreads = 8;
  std::vector<SandboxResult> results(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([i, &results] {
      const std::string body = i == 3 ? "while True: pass\n" : cat("print(", i, " * 2)\n");
      SandboxOptions o = quick();
      o.timeout_seconds = i == 3 ? 1 : 20;
      results[static_cast<size_t>(i)] = run_sandboxed(body, o);
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    const auto& r = results[static_cast<size_t>(i)];
    if (i == 3) {
      EXPECT_EQ(r.status, SandboxStatus::timeout);
    } else {
      EXPECT_EQ(r.status, SandboxStatus::ok) << i << ": " << r.message << r.stderr_tail;
      EXPECT_EQ(r.stdout_text, cat(i * 2, "\n"));
    }
  }
}

TEST(Sandbox, WeakerIsolationStillBlocksWritesAndTcpWithLandlock) {
  SandboxOptions o = quick();
  o.isolation = SandboxIsolation::no_namespaces;
  const SandboxResult r = run_sandboxed("print('ok')\n", o);
  ASSERT_EQ(r.status, SandboxStatus::ok) << r.message << r.stderr_tail;
  EXPECT_EQ(r.isolation.find("namespaces"), std::string::npos) << r.isolation;
  if (r.isolation != "landlock") GTEST_SKIP() << "no Landlock here (" << r.isolation << ")";
  expect_no_writes_outside(o);
  expect_no_network(o);
}

/// Where unshare is forbidden (as under docker's default seccomp profile): the default
/// refuses with a message saying what to change; best_effort runs with weaker isolation.
TEST(Sandbox, WithoutNamespacesRefusesUnlessWeakerIsolationIsAccepted) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_unshare, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(std::size(filter)), filter};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
      _exit(10);
    SandboxResult r = run_sandboxed("print('ran')\n", quick());
    if (r.status != SandboxStatus::setup_error || !r.stdout_text.empty()) _exit(11);
    if (r.message.find("namespaces") == std::string::npos ||
        r.message.find("best_effort") == std::string::npos)
      _exit(12);
    std::fprintf(stderr, "refused: %s\n", r.message.c_str());
    SandboxOptions o = quick();
    o.isolation = SandboxIsolation::best_effort;
    r = run_sandboxed("print('ran')\n", o);
    if (r.status != SandboxStatus::ok || r.stdout_text != "ran\n") _exit(13);
    if (r.isolation.find("namespaces") != std::string::npos) _exit(14);
    if (r.message.find("weaker isolation") == std::string::npos) _exit(15);
    std::fprintf(stderr, "best_effort: %s (%s)\n", r.isolation.c_str(), r.message.c_str());
    _exit(0);
  }
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0) << "check " << WEXITSTATUS(st) << " failed";
}

TEST(Sandbox, BadOptionsThrow) {
  SandboxOptions o = quick();
  o.python = "/nonexistent/python3";
  EXPECT_THROW(run_sandboxed("pass\n", o), Error);
  o = quick();
  o.python = "python3";
  EXPECT_THROW(run_sandboxed("pass\n", o), Error);
  o = quick();
  o.timeout_seconds = 0;
  EXPECT_THROW(run_sandboxed("pass\n", o), Error);
  o = quick();
  o.work_root = "/nonexistent-qsweep-root";
  EXPECT_THROW(run_sandboxed("pass\n", o), Error);
}

TEST(Sandbox, ProgramTextIsNeverInterpretedByAShell) {
  REQUIRE_NAMESPACES();
  const SandboxResult r =
      run_sandboxed("s = \"$(touch /tmp/x) `id` ; rm -rf / ' \\\" \"\nprint(s)\n", quick());
  EXPECT_EQ(r.status, SandboxStatus::ok) << r.stderr_tail;
  EXPECT_EQ(r.stdout_text, "$(touch /tmp/x) `id` ; rm -rf / ' \" \n");
}

/// Both isolations the sandbox offers here: full, and (where Landlock exists) the fallback.
std::vector<std::pair<std::string, SandboxOptions>> isolations() {
  std::vector<std::pair<std::string, SandboxOptions>> v;
  if (probe_sandbox(quick()).usable) v.emplace_back("namespaces", quick());
  SandboxOptions weak = quick();
  weak.isolation = SandboxIsolation::no_namespaces;
  if (run_sandboxed("pass\n", weak).isolation == "landlock") v.emplace_back("landlock", weak);
  return v;
}

TEST(Sandbox, NoSocketOfAnyFamily) {
  REQUIRE_NAMESPACES();
  const std::string program =
      "import socket\n"
      "tries = [('inet', socket.AF_INET, socket.SOCK_STREAM),\n"
      "         ('inet-udp', socket.AF_INET, socket.SOCK_DGRAM),\n"
      "         ('inet6', socket.AF_INET6, socket.SOCK_STREAM),\n"
      "         ('unix', socket.AF_UNIX, socket.SOCK_STREAM),\n"
      "         ('unix-dgram', socket.AF_UNIX, socket.SOCK_DGRAM),\n"
      "         ('netlink', socket.AF_NETLINK, socket.SOCK_RAW),\n"
      "         ('packet', socket.AF_PACKET, socket.SOCK_RAW),\n"
      "         ('vsock', socket.AF_VSOCK, socket.SOCK_STREAM)]\n"
      "for name, fam, typ in tries:\n"
      "    try:\n"
      "        socket.socket(fam, typ)\n"
      "        print(name, 'OPENED')\n"
      "    except OSError as e:\n"
      "        print(name, 'refused')\n"
      "try:\n"
      "    socket.socketpair()\n"
      "    print('socketpair OPENED')\n"
      "except OSError:\n"
      "    print('socketpair refused')\n";
  const std::string expected =
      "inet refused\ninet-udp refused\ninet6 refused\nunix refused\nunix-dgram refused\n"
      "netlink refused\npacket refused\nvsock refused\nsocketpair refused\n";
  for (const auto& [name, o] : isolations()) {
    const SandboxResult r = run_sandboxed(program, o);
    EXPECT_EQ(r.status, SandboxStatus::ok) << name << ": " << r.message << r.stderr_tail;
    EXPECT_EQ(r.stdout_text, expected) << name;
  }
  expect_next_program_passes();
}

/// A path-based unix socket the test listens on, in a directory anyone may enter: the
/// program cannot connect, and the listener sees nothing.
TEST(Sandbox, NoPathBasedUnixSocket) {
  REQUIRE_NAMESPACES();
  const std::string dir = test::make_temp_dir("sandbox-unix");
  ::chmod(dir.c_str(), 0777);
  const std::string path = dir + "/s";
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << path;
  ASSERT_EQ(::listen(fd, 4), 0);
  ::chmod(path.c_str(), 0777);
  const std::string program =
      cat("import socket\n", "s = socket.socket(socket.AF_UNIX)\n", "s.settimeout(3)\n",
          "s.connect('", path, "')\n", "print('connected')\n");
  for (const auto& [name, o] : isolations()) {
    const SandboxResult r = run_sandboxed(program, o);
    EXPECT_EQ(r.status, SandboxStatus::failed) << name << ": " << to_string(r.status);
    EXPECT_EQ(r.stdout_text.find("connected"), std::string::npos) << name;
    EXPECT_NE(r.stderr_tail.find("Error"), std::string::npos) << name << ": " << r.stderr_tail;
  }
  pollfd p{fd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "the listener received a connection from the sandbox";
  // The listener itself works: a connection from outside is seen.
  const int c = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::poll(&p, 1, 1000), 1);
  ::close(c);
  ::close(fd);
  fs::remove_all(dir);
}

TEST(Sandbox, ScratchDirHasASizeCap) {
  REQUIRE_NAMESPACES();
  SandboxOptions o = quick();
  o.scratch_bytes = int64_t{8} << 20;
  o.max_file_bytes = int64_t{64} << 20;
  // The scratch dir is a filesystem of exactly that size (not the host disk) ...
  SandboxResult r =
      run_sandboxed("import os\ns = os.statvfs('.')\nprint(s.f_blocks * s.f_frsize)\n", o);
  ASSERT_EQ(r.status, SandboxStatus::ok) << r.message << r.stderr_tail;
  EXPECT_EQ(r.stdout_text, cat(o.scratch_bytes, "\n"));
  // ... and writing past it (in files each under the per-file limit) fails with ENOSPC.
  const std::string fill =
      "import errno\nn = 0\ntry:\n    for i in range(64):\n"
      "        with open(f'f{i}', 'wb') as f:\n"
      "            for j in range(4):\n                f.write(b'x' * 2**20)\n"
      "                f.flush()\n                n += 1\n"
      "except OSError as e:\n    print(n, errno.errorcode[e.errno])\n    raise\n";
  r = run_sandboxed(fill, o);
  EXPECT_EQ(r.status, SandboxStatus::failed) << to_string(r.status) << r.stderr_tail;
  const int written_mib = std::atoi(r.stdout_text.c_str());
  EXPECT_LE(written_mib, 8) << r.stdout_text;
  EXPECT_GE(written_mib, 6) << r.stdout_text;
  EXPECT_NE(r.stdout_text.find("ENOSPC"), std::string::npos) << r.stdout_text;
  // The number of files is capped as well.
  o.scratch_files = 100;
  r = run_sandboxed("for i in range(1000):\n    open(f'e{i}', 'w').close()\n", o);
  EXPECT_EQ(r.status, SandboxStatus::failed) << to_string(r.status);
  EXPECT_NE(r.stderr_tail.find("No space left"), std::string::npos) << r.stderr_tail;
  expect_next_program_passes();
}

/// A world-readable file in a world-readable directory under `dir`.
std::string make_visible_file(const std::string& dir) {
  ::chmod(dir.c_str(), 0755);
  const std::string f = dir + "/secret.txt";
  std::ofstream(f) << "secret\n";
  ::chmod(f.c_str(), 0644);
  return f;
}

/// The first regular file in `dir` (a sample of what a host directory holds), or "".
std::string some_file_in(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) return e.path().string();
  return "";
}

TEST(Sandbox, SeesOnlyItsInterpreterAndScratchDir) {
  REQUIRE_NAMESPACES();
  const std::string tmp_dir = cat("/tmp/qsweep-visible-", ::getpid());
  fs::create_directories(tmp_dir);
  std::vector<std::string> targets = {__FILE__,
                                      fs::path(__FILE__).parent_path().string(),
                                      make_visible_file(tmp_dir),
                                      tmp_dir,
                                      "/etc/passwd",
                                      "/etc/hostname",
                                      "/etc/hosts",
                                      "/work",
                                      "/root",
                                      "/home"};
  for (const std::string& d : {test::data_dir(), test::shared_dir()}) {
    targets.push_back(d);
    if (const std::string f = some_file_in(d); !f.empty()) targets.push_back(f);
  }
  if (const char* home = std::getenv("HOME"); home && *home) {
    targets.push_back(home);
    if (const std::string f = some_file_in(home); !f.empty()) targets.push_back(f);
  }
  std::string program = "import os\nfor p in [\n";
  int existing = 0;
  for (const auto& t : targets) {
    if (!fs::exists(t)) continue;  // only what the host has is a real check
    ++existing;
    program += cat("    '", t, "',\n");
  }
  ASSERT_GE(existing, 8);
  program +=
      "]:\n    try:\n        if os.path.isdir(p):\n            os.listdir(p)\n"
      "        else:\n            open(p, 'rb').read()\n        print('SEEN', p)\n"
      "    except (FileNotFoundError, PermissionError) as e:\n"
      "        print('hidden', type(e).__name__)\n";
  for (const auto& [name, o] : isolations()) {
    const SandboxResult r = run_sandboxed(program, o);
    ASSERT_EQ(r.status, SandboxStatus::ok) << name << ": " << r.message << r.stderr_tail;
    EXPECT_EQ(r.stdout_text.find("SEEN"), std::string::npos) << name << ":\n" << r.stdout_text;
    size_t lines = 0;
    for (char ch : r.stdout_text) lines += ch == '\n';
    EXPECT_EQ(lines, static_cast<size_t>(existing)) << r.stdout_text;
  }
  // With namespaces the root holds only the interpreter's directories and the scratch dir's
  // parents.
  const SandboxResult r = run_sandboxed("import os\nprint(sorted(os.listdir('/')))\n", quick());
  ASSERT_EQ(r.status, SandboxStatus::ok) << r.stderr_tail;
  for (const char* name : {"'work'", "'root'", "'home'", "'opt'", "'var'", "'srv'", "'mnt'"})
    EXPECT_EQ(r.stdout_text.find(name), std::string::npos) << name << " in " << r.stdout_text;
  EXPECT_NE(r.stdout_text.find("'usr'"), std::string::npos) << r.stdout_text;
  fs::remove_all(tmp_dir);
}

TEST(Sandbox, StandardLibraryStillWorks) {
  REQUIRE_NAMESPACES();
  const std::string program =
      "import json, re, math, collections, itertools, functools, heapq, bisect, string\n"
      "import hashlib, random, decimal, fractions, datetime, time, statistics, typing\n"
      "import tempfile, os, subprocess, sys, unittest, doctest, copy, operator, array\n"
      "import multiprocessing, threading, queue, struct, zlib, io, textwrap, enum\n"
      "print(json.dumps({'a': math.gcd(12, 18)}), hashlib.sha256(b'x').hexdigest()[:8])\n"
      "print(time.strftime('%Y', time.localtime(0)) in ('1969', '1970'), len(os.urandom(4)))\n"
      "with tempfile.TemporaryDirectory() as d:\n"
      "    open(os.path.join(d, 'f'), 'w').write('x')\n"
      "    print(os.listdir(d))\n"
      "out = subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True)\n"
      "print(out.stdout.decode().strip())\n"
      "t = threading.Thread(target=print, args=([1, 2],))\nt.start()\nt.join()\n";
  const SandboxResult r = run_sandboxed(program, quick());
  ASSERT_EQ(r.status, SandboxStatus::ok) << r.message << r.stderr_tail;
  EXPECT_EQ(r.stdout_text, "{\"a\": 6} 2d711642\nTrue 4\n['f']\n42\n[1, 2]\n");
}

/// What could get around the caps and the socket rule: a nested user namespace (which could
/// mount a tmpfs without a size cap), io_uring (which opens sockets itself), mounts.
TEST(Sandbox, NoNestedNamespacesMountsOrIoUring) {
  REQUIRE_NAMESPACES();
  const std::string program =
      cat("import ctypes, errno, os\n", "libc = ctypes.CDLL(None, use_errno=True)\n",
          "def call(name, *args):\n", "    r = getattr(libc, name)(*args)\n",
          "    return errno.errorcode.get(ctypes.get_errno(), '?') if r < 0 else 'ALLOWED'\n",
          "print('unshare-user', call('unshare', ", CLONE_NEWUSER, "))\n",
          "print('unshare-mount', call('unshare', ", CLONE_NEWNS, "))\n",
          "print('io_uring_setup', call('syscall', ", SYS_io_uring_setup, ", 8, None))\n",
          "print('mount', call('mount', b'none', b'.', b'tmpfs', 0, None))\n", "pid = os.fork()\n",
          "if pid == 0:\n", "    os._exit(0)\n", "os.waitpid(pid, 0)\n", "print('fork ok')\n");
  const std::string expected =
      "unshare-user EPERM\nunshare-mount EPERM\nio_uring_setup EPERM\nmount EPERM\nfork ok\n";
  for (const auto& [name, o] : isolations()) {
    const SandboxResult r = run_sandboxed(program, o);
    EXPECT_EQ(r.status, SandboxStatus::ok) << name << ": " << r.message << r.stderr_tail;
    EXPECT_EQ(r.stdout_text, expected) << name;
  }
}

/// The per-program cost of the isolation: prints the time for 50 runs of `pass`.
TEST(Sandbox, PerProgramOverhead) {
  REQUIRE_NAMESPACES();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(run_sandboxed("pass\n", quick()).passed());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("50 x 'pass': %.3f s (%.1f ms each)\n", s, s * 20);
}

}  // namespace
}  // namespace qsweep
