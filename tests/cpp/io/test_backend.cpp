// Tests of the two Backend implementations against real sockets. Every test of BackendTest runs
// once per backend (io_uring and epoll) and checks that it leaves no fd behind.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstring>
#include <deque>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "core/io/backend.hpp"
#include "core/io/epoll_backend.hpp"
#include "core/io/fd.hpp"
#include "core/io/uring_backend.hpp"

namespace tf::core {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// How long a test waits for a completion that must come before declaring failure.
constexpr int64_t kPatienceNs = 5'000'000'000;

int count_open_fds() {
  int count = 0;
  DIR* directory = ::opendir("/proc/self/fd");
  if (directory == nullptr) return -1;
  while (dirent* entry = ::readdir(directory)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(directory);
  return count;
}

std::pair<UniqueFd, UniqueFd> make_socket_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    throw std::system_error(errno, std::generic_category(), "socketpair");
  }
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

sockaddr_in loopback_address(uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

uint16_t local_port(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

// A non-blocking TCP listener on 127.0.0.1 with a kernel-chosen port.
UniqueFd make_listener() {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_in address = loopback_address(0);
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listener.get(), 64) != 0) {
    throw std::system_error(errno, std::generic_category(), "listener");
  }
  return listener;
}

// A blocking client connected to 127.0.0.1:port (loopback connects complete at once).
UniqueFd connect_client(uint16_t port) {
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address = loopback_address(port);
  if (::connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    throw std::system_error(errno, std::generic_category(), "connect");
  }
  return client;
}

// Both ends of a loopback TCP connection, non-blocking.
std::pair<UniqueFd, UniqueFd> make_tcp_pair() {
  UniqueFd listener = make_listener();
  UniqueFd client = connect_client(local_port(listener.get()));
  UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (!server) throw std::system_error(errno, std::generic_category(), "accept4");
  ::fcntl(client.get(), F_SETFL, ::fcntl(client.get(), F_GETFL) | O_NONBLOCK);
  return {std::move(client), std::move(server)};
}

void write_all(int fd, std::string_view text) {
  ASSERT_EQ(::send(fd, text.data(), text.size(), MSG_NOSIGNAL), static_cast<ssize_t>(text.size()));
}

// A unix socket path in the abstract namespace (nothing to clean up), unique per process+test.
sockaddr_un abstract_unix_address(socklen_t& length) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string name = "tf-backend-test-" + std::to_string(::getpid()) + "-" +
                           ::testing::UnitTest::GetInstance()->current_test_info()->name();
  const size_t name_length = std::min(name.size(), sizeof address.sun_path - 2);
  std::memcpy(address.sun_path + 1, name.data(), name_length);
  std::replace(address.sun_path + 1, address.sun_path + 1 + name_length, '/', '_');
  length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name_length);
  return address;
}

std::unique_ptr<Backend> build(BackendKind kind, const BackendOptions& options) {
  return kind == BackendKind::io_uring ? make_uring_backend(options) : make_epoll_backend(options);
}

class BackendTest : public ::testing::TestWithParam<BackendKind> {
 protected:
  void SetUp() override {
    fds_before_ = count_open_fds();
    backend_ = build(GetParam(), options());
  }

  void TearDown() override {
    backend_.reset();
    EXPECT_EQ(count_open_fds(), fds_before_) << "file descriptors leaked";
  }

  static BackendOptions options() {
    BackendOptions options;
    options.entries = 64;
    options.buffer_count = 4;
    options.buffer_size = 64;
    return options;
  }

  // Rebuilds the backend with other options (the old one is destroyed first).
  void rebuild(const BackendOptions& options) {
    backend_.reset();
    backend_ = build(GetParam(), options);
  }

  // The next completion (final or not) of `token`; completions of other tokens are kept for
  // later calls. Fails the test when none arrives within kPatienceNs.
  Completion next(uint64_t token) {
    const auto deadline = Clock::now() + std::chrono::nanoseconds(kPatienceNs);
    for (;;) {
      for (auto it = backlog_.begin(); it != backlog_.end(); ++it) {
        if (it->token == token) {
          Completion found = *it;
          backlog_.erase(it);
          return found;
        }
      }
      if (Clock::now() > deadline) {
        ADD_FAILURE() << "no completion for token " << token;
        return Completion{token, -ETIMEDOUT, false, -1};
      }
      std::vector<Completion> completions;
      backend_->wait(100'000'000, completions);
      backlog_.insert(backlog_.end(), completions.begin(), completions.end());
    }
  }

  // The final completion of `token`, skipping (and failing on) any more == true before it.
  Completion final_of(uint64_t token) {
    Completion completion = next(token);
    EXPECT_FALSE(completion.more) << "unexpected multishot completion for " << token;
    return completion;
  }

  // True when nothing is ready right now for `token` (wait(0) and the backlog).
  bool nothing_ready_for(uint64_t token) {
    std::vector<Completion> completions;
    backend_->wait(0, completions);
    backlog_.insert(backlog_.end(), completions.begin(), completions.end());
    for (const Completion& completion : backlog_) {
      if (completion.token == token) return false;
    }
    return true;
  }

  // Waits until `timeout_ns` has fully passed, in as many wait() calls as it takes: wait() may
  // return early with nothing (on EINTR, which the task-work notification of an io_uring torn
  // down earlier in this process also causes for epoll_wait). Returns the completions seen;
  // fails when it took suspiciously many calls (a busy loop).
  size_t wait_out(int64_t timeout_ns) {
    const auto deadline = Clock::now() + std::chrono::nanoseconds(timeout_ns);
    size_t total = 0;
    int calls = 0;
    for (auto now = Clock::now(); now < deadline; now = Clock::now()) {
      std::vector<Completion> completions;
      const int64_t left =
          std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
      total += backend_->wait(left, completions);
      ++calls;
    }
    EXPECT_LE(calls, 100) << "wait() returned early too often (busy loop?)";
    return total;
  }

  int fds_before_ = 0;
  std::unique_ptr<Backend> backend_;
  std::deque<Completion> backlog_;
};

TEST_P(BackendTest, ReportsItsKind) {
  EXPECT_EQ(backend_->kind(), GetParam());
}

TEST_P(BackendTest, AcceptsOneConnectionWithPeerAddress) {
  UniqueFd listener = make_listener();
  sockaddr_in peer{};
  socklen_t peer_length = sizeof peer;
  backend_->accept(listener.get(), reinterpret_cast<sockaddr*>(&peer), &peer_length, 1);
  EXPECT_EQ(backend_->in_flight(), 1u);
  // The listener is non-blocking: the accept must wait for a connection, not fail with EAGAIN.
  EXPECT_TRUE(nothing_ready_for(1));
  UniqueFd client = connect_client(local_port(listener.get()));
  Completion completion = final_of(1);
  ASSERT_GE(completion.result, 0);
  UniqueFd accepted(completion.result);
  EXPECT_EQ(peer.sin_family, AF_INET);
  EXPECT_EQ(peer.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
  EXPECT_EQ(peer_length, sizeof peer);
  EXPECT_TRUE(::fcntl(accepted.get(), F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(::fcntl(accepted.get(), F_GETFD) & FD_CLOEXEC);
  EXPECT_EQ(backend_->in_flight(), 0u);
}

TEST_P(BackendTest, AcceptOnASocketThatDoesNotListenFails) {
  auto [left, right] = make_tcp_pair();
  backend_->accept(left.get(), nullptr, nullptr, 1);
  EXPECT_EQ(final_of(1).result, -EINVAL);
}

TEST_P(BackendTest, MultishotAcceptDeliversEveryConnectionUntilCancelled) {
  UniqueFd listener = make_listener();
  backend_->accept_multishot(listener.get(), 7);
  std::vector<UniqueFd> clients;
  std::vector<UniqueFd> accepted;
  for (int i = 0; i < 3; ++i) clients.push_back(connect_client(local_port(listener.get())));
  for (int i = 0; i < 3; ++i) {
    Completion completion = next(7);
    ASSERT_TRUE(completion.more);
    ASSERT_GE(completion.result, 0);
    accepted.emplace_back(completion.result);
    EXPECT_TRUE(::fcntl(completion.result, F_GETFL) & O_NONBLOCK);
  }
  EXPECT_EQ(backend_->in_flight(), 1u);
  // Accepting still works after the first batch.
  clients.push_back(connect_client(local_port(listener.get())));
  Completion fourth = next(7);
  ASSERT_TRUE(fourth.more);
  ASSERT_GE(fourth.result, 0);
  accepted.emplace_back(fourth.result);

  backend_->cancel(7);
  Completion last = next(7);
  EXPECT_FALSE(last.more);
  EXPECT_EQ(last.result, -ECANCELED);
  EXPECT_EQ(backend_->in_flight(), 0u);
}

TEST_P(BackendTest, CancelsMultishotAcceptBeforeAnyConnection) {
  UniqueFd listener = make_listener();
  backend_->accept_multishot(listener.get(), 3);
  EXPECT_TRUE(nothing_ready_for(3));
  backend_->cancel(3);
  EXPECT_EQ(final_of(3).result, -ECANCELED);
  EXPECT_EQ(backend_->in_flight(), 0u);
}

TEST_P(BackendTest, EchoesOverASocketPair) {
  auto [left, right] = make_socket_pair();
  char received[16] = {};
  backend_->recv(left.get(), received, sizeof received, 1);
  static const char kText[] = "hello";
  iovec vector{const_cast<char*>(kText), 5};
  msghdr message{};
  message.msg_iov = &vector;
  message.msg_iovlen = 1;
  backend_->sendmsg(right.get(), &message, 2);
  EXPECT_EQ(final_of(2).result, 5);
  EXPECT_EQ(final_of(1).result, 5);
  EXPECT_EQ(std::string_view(received, 5), "hello");
  EXPECT_EQ(backend_->in_flight(), 0u);
}

TEST_P(BackendTest, RecvOnANonBlockingSocketWaitsForData) {
  auto [left, right] = make_socket_pair();
  char received[8];
  backend_->recv(left.get(), received, sizeof received, 1);
  EXPECT_TRUE(nothing_ready_for(1));
  write_all(right.get(), "abc");
  EXPECT_EQ(final_of(1).result, 3);
}

TEST_P(BackendTest, RecvReportsEndOfStream) {
  auto [left, right] = make_socket_pair();
  char received[8];
  backend_->recv(left.get(), received, sizeof received, 1);
  EXPECT_TRUE(nothing_ready_for(1));
  right.reset();
  EXPECT_EQ(final_of(1).result, 0);
}

TEST_P(BackendTest, RecvOnAClosedDescriptorFails) {
  char received[8];
  UniqueFd closed(::dup(0));
  const int number = closed.get();
  closed.reset();
  backend_->recv(number, received, sizeof received, 1);
  EXPECT_EQ(final_of(1).result, -EBADF);
}

TEST_P(BackendTest, SendToAClosedPeerFailsWithoutSignal) {
  auto [left, right] = make_socket_pair();
  right.reset();
  static const char kText[] = "x";
  iovec vector{const_cast<char*>(kText), 1};
  msghdr message{};
  message.msg_iov = &vector;
  message.msg_iovlen = 1;
  backend_->sendmsg(left.get(), &message, 1);
  EXPECT_EQ(final_of(1).result, -EPIPE);
}

// Sends 1 MiB through loopback TCP while receiving it, re-queueing partial sends.
TEST_P(BackendTest, TransfersOneMebibyteOverTcpWithPartialSends) {
  // Named references: older clang cannot capture structured bindings in a lambda.
  auto connection = make_tcp_pair();
  UniqueFd& client = connection.first;
  UniqueFd& server = connection.second;
  int small = 16 * 1024;
  ::setsockopt(client.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  ::setsockopt(server.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  constexpr size_t kSize = 1 << 20;
  std::vector<unsigned char> payload(kSize);
  for (size_t i = 0; i < kSize; ++i) payload[i] = static_cast<unsigned char>(i * 7 + i / 251);
  std::vector<unsigned char> received;
  received.reserve(kSize);
  std::vector<unsigned char> chunk(32 * 1024);

  constexpr uint64_t kSend = 1, kRecv = 2;
  size_t sent = 0;
  iovec vector{};
  msghdr message{};
  message.msg_iov = &vector;
  message.msg_iovlen = 1;
  auto queue_send = [&] {
    vector.iov_base = payload.data() + sent;
    vector.iov_len = kSize - sent;
    backend_->sendmsg(client.get(), &message, kSend);
  };
  queue_send();
  backend_->recv(server.get(), chunk.data(), chunk.size(), kRecv);
  int partial_sends = 0;
  bool sending = true, receiving = true;
  const auto deadline = Clock::now() + 10s;
  while ((sending || receiving) && Clock::now() < deadline) {
    std::vector<Completion> completions;
    backend_->wait(100'000'000, completions);
    for (const Completion& completion : completions) {
      ASSERT_FALSE(completion.more);
      ASSERT_GT(completion.result, 0) << "token " << completion.token;
      if (completion.token == kSend) {
        sent += static_cast<size_t>(completion.result);
        if (sent < kSize) {
          ++partial_sends;
          queue_send();
        } else {
          sending = false;
        }
      } else {
        received.insert(received.end(), chunk.begin(), chunk.begin() + completion.result);
        if (received.size() < kSize) {
          backend_->recv(server.get(), chunk.data(), chunk.size(), kRecv);
        } else {
          receiving = false;
        }
      }
    }
  }
  ASSERT_FALSE(sending || receiving) << "sent " << sent << " received " << received.size();
  EXPECT_EQ(received, payload);
  EXPECT_EQ(backend_->in_flight(), 0u);
  // io_uring may finish a large send in one completion; epoll always sends partially here.
  if (GetParam() == BackendKind::epoll) {
    EXPECT_GT(partial_sends, 0);
  }
  RecordProperty("partial_sends", partial_sends);
}

TEST_P(BackendTest, MultishotRecvUsesProvidedBuffersUntilNoneIsFree) {
  auto [left, right] = make_socket_pair();
  backend_->recv_multishot(left.get(), 5);
  std::vector<int32_t> held;
  // Four buffers: each message (sent after the previous one arrived) takes one.
  for (int i = 0; i < 4; ++i) {
    const std::string text = "message" + std::to_string(i);
    write_all(right.get(), text);
    Completion completion = next(5);
    ASSERT_TRUE(completion.more);
    ASSERT_EQ(completion.result, static_cast<int32_t>(text.size()));
    ASSERT_GE(completion.buffer, 0);
    ASSERT_LT(completion.buffer, 4);
    std::span<std::byte> bytes = backend_->buffer_data(completion.buffer);
    EXPECT_EQ(bytes.size(), 64u);
    EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(bytes.data()), text.size()), text);
    held.push_back(completion.buffer);
  }
  // All four are held: the next message ends the operation with -ENOBUFS.
  write_all(right.get(), "overflow");
  Completion exhausted = next(5);
  EXPECT_FALSE(exhausted.more);
  EXPECT_EQ(exhausted.result, -ENOBUFS);
  EXPECT_EQ(exhausted.buffer, -1);
  EXPECT_EQ(backend_->in_flight(), 0u);

  // Released buffers are used again; the unread message is still there.
  for (int32_t id : held) backend_->release_buffer(id);
  backend_->recv_multishot(left.get(), 6);
  Completion resumed = next(6);
  ASSERT_TRUE(resumed.more);
  ASSERT_EQ(resumed.result, 8);
  ASSERT_GE(resumed.buffer, 0);
  EXPECT_EQ(std::string_view(
                reinterpret_cast<const char*>(backend_->buffer_data(resumed.buffer).data()), 8),
            "overflow");
  backend_->release_buffer(resumed.buffer);

  // End of stream ends it with result 0.
  right.reset();
  Completion end = next(6);
  EXPECT_FALSE(end.more);
  EXPECT_EQ(end.result, 0);
  RecordProperty("end_of_stream_buffer", end.buffer);
  if (end.buffer >= 0) backend_->release_buffer(end.buffer);
  EXPECT_EQ(backend_->in_flight(), 0u);
}

TEST_P(BackendTest, MultishotRecvCancelledEndsWithCancelled) {
  auto [left, right] = make_socket_pair();
  backend_->recv_multishot(left.get(), 5);
  write_all(right.get(), "one");
  Completion first = next(5);
  ASSERT_TRUE(first.more);
  backend_->release_buffer(first.buffer);
  backend_->cancel(5);
  Completion last = next(5);
  EXPECT_FALSE(last.more);
  EXPECT_EQ(last.result, -ECANCELED);
  EXPECT_EQ(backend_->in_flight(), 0u);
}

TEST_P(BackendTest, ConnectsToAListeningPort) {
  UniqueFd listener = make_listener();
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_in address = loopback_address(local_port(listener.get()));
  backend_->connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof address, 1);
  EXPECT_EQ(final_of(1).result, 0);
  UniqueFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted);
}

TEST_P(BackendTest, ConnectToAClosedPortIsRefused) {
  uint16_t port;
  {
    UniqueFd probe = make_listener();
    port = local_port(probe.get());
  }
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_in address = loopback_address(port);
  backend_->connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof address, 1);
  EXPECT_EQ(final_of(1).result, -ECONNREFUSED);
}

TEST_P(BackendTest, ConnectsToAUnixSocket) {
  socklen_t length;
  sockaddr_un address = abstract_unix_address(length);
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), length), 0);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  UniqueFd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  backend_->connect(client.get(), reinterpret_cast<sockaddr*>(&address), length, 1);
  EXPECT_EQ(final_of(1).result, 0);
  backend_->accept(listener.get(), nullptr, nullptr, 2);
  Completion accepted = final_of(2);
  ASSERT_GE(accepted.result, 0);
  UniqueFd server(accepted.result);
}

TEST_P(BackendTest, ConnectToAMissingUnixSocketFails) {
  socklen_t length;
  sockaddr_un address = abstract_unix_address(length);
  UniqueFd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  backend_->connect(client.get(), reinterpret_cast<sockaddr*>(&address), length, 1);
  EXPECT_EQ(final_of(1).result, -ECONNREFUSED);
}

TEST_P(BackendTest, PollsForReadableAndWritable) {
  auto [left, right] = make_socket_pair();
  backend_->poll(left.get(), POLLOUT, 1);
  Completion writable = final_of(1);
  EXPECT_TRUE(writable.result & POLLOUT);
  EXPECT_FALSE(writable.result & POLLIN);

  backend_->poll(left.get(), POLLIN, 2);
  EXPECT_TRUE(nothing_ready_for(2));
  write_all(right.get(), "x");
  Completion readable = final_of(2);
  EXPECT_TRUE(readable.result & POLLIN);
  EXPECT_EQ(backend_->in_flight(), 0u);
}

TEST_P(BackendTest, PollReportsHangUp) {
  auto [left, right] = make_socket_pair();
  backend_->poll(left.get(), POLLIN, 1);
  EXPECT_TRUE(nothing_ready_for(1));
  right.reset();
  Completion completion = final_of(1);
  ASSERT_GT(completion.result, 0);
  EXPECT_TRUE(completion.result & (POLLIN | POLLHUP));
}

TEST_P(BackendTest, PollAndRecvOnOneDescriptorBothComplete) {
  auto [left, right] = make_socket_pair();
  char received[8];
  backend_->poll(left.get(), POLLIN, 1);
  backend_->recv(left.get(), received, sizeof received, 2);
  backend_->poll(left.get(), POLLOUT, 3);
  EXPECT_TRUE(final_of(3).result & POLLOUT);
  EXPECT_TRUE(nothing_ready_for(1));
  EXPECT_TRUE(nothing_ready_for(2));
  write_all(right.get(), "data");
  EXPECT_TRUE(final_of(1).result & POLLIN);
  EXPECT_EQ(final_of(2).result, 4);
  EXPECT_EQ(backend_->in_flight(), 0u);
}

TEST_P(BackendTest, PollOnARegularFileIsReadyAtOnce) {
  UniqueFd file(::open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  ASSERT_TRUE(file);
  backend_->poll(file.get(), POLLIN, 1);
  EXPECT_TRUE(final_of(1).result & POLLIN);
  backend_->poll(file.get(), POLLOUT, 2);
  EXPECT_TRUE(final_of(2).result & POLLOUT);
  EXPECT_EQ(backend_->in_flight(), 0u);
}

TEST_P(BackendTest, CancelsAWaitingRecv) {
  auto [left, right] = make_socket_pair();
  char received[8];
  backend_->recv(left.get(), received, sizeof received, 9);
  EXPECT_TRUE(nothing_ready_for(9));
  EXPECT_EQ(backend_->in_flight(), 1u);
  backend_->cancel(9);
  Completion completion = final_of(9);
  EXPECT_EQ(completion.result, -ECANCELED);
  EXPECT_EQ(backend_->in_flight(), 0u);
  // The descriptor is still usable after the cancellation.
  backend_->recv(left.get(), received, sizeof received, 10);
  write_all(right.get(), "ok");
  EXPECT_EQ(final_of(10).result, 2);
}

TEST_P(BackendTest, CancelOfAFinishedOperationIsHarmless) {
  auto [left, right] = make_socket_pair();
  backend_->poll(left.get(), POLLOUT, 1);
  EXPECT_TRUE(final_of(1).result & POLLOUT);
  backend_->cancel(1);
  backend_->cancel(12345);
  std::vector<Completion> completions;
  backend_->wait(20'000'000, completions);
  EXPECT_TRUE(completions.empty());
  EXPECT_EQ(backend_->in_flight(), 0u);
}

TEST_P(BackendTest, CancelFdEndsEveryOperationOnIt) {
  auto [left, right] = make_socket_pair();
  auto [other_left, other_right] = make_socket_pair();
  char received[8];
  char other_received[8];
  backend_->recv(left.get(), received, sizeof received, 1);
  backend_->poll(left.get(), POLLIN, 2);
  backend_->recv(other_left.get(), other_received, sizeof other_received, 3);
  EXPECT_TRUE(nothing_ready_for(1));
  backend_->cancel_fd(left.get());
  EXPECT_EQ(final_of(1).result, -ECANCELED);
  EXPECT_EQ(final_of(2).result, -ECANCELED);
  EXPECT_EQ(backend_->in_flight(), 1u);
  // Operations on other descriptors are untouched.
  write_all(other_right.get(), "z");
  EXPECT_EQ(final_of(3).result, 1);
  EXPECT_EQ(backend_->in_flight(), 0u);
}

TEST_P(BackendTest, CancelFdThenCloseAndReuseTheNumber) {
  auto [left, right] = make_socket_pair();
  char received[8];
  backend_->recv(left.get(), received, sizeof received, 1);
  EXPECT_TRUE(nothing_ready_for(1));
  const int number = left.get();
  backend_->cancel_fd(number);
  left.reset();
  EXPECT_EQ(final_of(1).result, -ECANCELED);
  // A new socket gets the same number: operations on it must work.
  auto [again_left, again_right] = make_socket_pair();
  ASSERT_EQ(again_left.get(), number);
  backend_->recv(again_left.get(), received, sizeof received, 2);
  EXPECT_TRUE(nothing_ready_for(2));
  write_all(again_right.get(), "new");
  EXPECT_EQ(final_of(2).result, 3);
}

// What a connection does at close when it knows its own operations: cancel them by token (no
// scan of every pending operation, as cancel_fd needs on io_uring), close, and the number is
// reused by the next socket.
TEST_P(BackendTest, CancelByTokenThenCloseAndReuseTheNumber) {
  auto [left, right] = make_socket_pair();
  backend_->recv_multishot(left.get(), 1);
  EXPECT_TRUE(nothing_ready_for(1));
  const int number = left.get();
  backend_->cancel(1);
  left.reset();
  EXPECT_EQ(final_of(1).result, -ECANCELED);
  auto [again_left, again_right] = make_socket_pair();
  ASSERT_EQ(again_left.get(), number);
  char received[8];
  backend_->recv(again_left.get(), received, sizeof received, 2);
  EXPECT_TRUE(nothing_ready_for(2));
  write_all(again_right.get(), "new");
  EXPECT_EQ(final_of(2).result, 3);
  EXPECT_EQ(backend_->in_flight(), 0u);
}

TEST_P(BackendTest, WaitTimesOutWithNoCompletions) {
  const auto start = Clock::now();
  EXPECT_EQ(wait_out(50'000'000), 0u);
  EXPECT_LT(Clock::now() - start, 1s);
  std::vector<Completion> completions;
  EXPECT_EQ(backend_->wait(0, completions), 0u);
  EXPECT_TRUE(completions.empty());
}

TEST_P(BackendTest, WaitTimesOutWhileOperationsAreInFlight) {
  auto [left, right] = make_socket_pair();
  char received[8];
  backend_->recv(left.get(), received, sizeof received, 1);
  EXPECT_EQ(wait_out(30'000'000), 0u);
  backend_->cancel(1);
  EXPECT_EQ(final_of(1).result, -ECANCELED);
}

TEST_P(BackendTest, WakeBeforeWaitMakesTheNextWaitReturn) {
  backend_->wake();
  std::vector<Completion> completions;
  const auto start = Clock::now();
  EXPECT_EQ(backend_->wait(-1, completions), 0u);
  EXPECT_LT(Clock::now() - start, 1s);
  // The wake-up was consumed: later waits time out.
  EXPECT_EQ(wait_out(20'000'000), 0u);
}

TEST_P(BackendTest, WakeFromAnotherThreadInterruptsAnEndlessWait) {
  for (int round = 0; round < 3; ++round) {
    // The delay lets the wake-up usually land while wait() sleeps; either order must work.
    std::thread waker([this] {
      std::this_thread::sleep_for(20ms);
      backend_->wake();
    });
    std::vector<Completion> completions;
    const auto start = Clock::now();
    EXPECT_EQ(backend_->wait(-1, completions), 0u);
    EXPECT_LT(Clock::now() - start, 2s);
    waker.join();
  }
}

void ignore_signal(int) {}

// A signal caught during wait(-1) makes it return (so that the caller can run its handlers).
TEST_P(BackendTest, ASignalInterruptsAnEndlessWait) {
  struct sigaction action {};
  struct sigaction previous {};
  action.sa_handler = ignore_signal;  // no SA_RESTART: the wait sees EINTR
  ASSERT_EQ(::sigaction(SIGUSR1, &action, &previous), 0);
  std::atomic<bool> returned{false};
  const pthread_t waiter = ::pthread_self();
  // Signals until the wait has returned: the first ones may arrive before it blocks.
  std::thread signaller([&] {
    while (!returned.load()) {
      ::pthread_kill(waiter, SIGUSR1);
      std::this_thread::sleep_for(10ms);
    }
  });
  std::vector<Completion> completions;
  EXPECT_EQ(backend_->wait(-1, completions), 0u);
  returned.store(true);
  signaller.join();
  ::sigaction(SIGUSR1, &previous, nullptr);
}

TEST_P(BackendTest, ManyOperationsThroughATinySubmissionQueue) {
  BackendOptions tiny = options();
  tiny.entries = 4;
  rebuild(tiny);
  auto [left, right] = make_socket_pair();
  char received[100][4];
  constexpr uint64_t kPolls = 100;
  for (uint64_t token = 0; token < kPolls; ++token) backend_->poll(left.get(), POLLOUT, token);
  for (uint64_t i = 0; i < 100; ++i) {
    backend_->recv(left.get(), received[i], sizeof received[i], 1000 + i);
  }
  EXPECT_EQ(backend_->in_flight(), 200u);
  for (uint64_t token = 0; token < kPolls; ++token) EXPECT_TRUE(final_of(token).result & POLLOUT);
  for (uint64_t i = 0; i < 100; ++i) backend_->cancel(1000 + i);
  for (uint64_t i = 0; i < 100; ++i) EXPECT_EQ(final_of(1000 + i).result, -ECANCELED);
  EXPECT_EQ(backend_->in_flight(), 0u);
}

TEST_P(BackendTest, CancelsManyWaitingOperationsInAnyOrder) {
  auto [left, right] = make_socket_pair();
  constexpr uint64_t kCount = 1000;
  std::vector<std::array<char, 4>> buffers(kCount);
  for (uint64_t token = 0; token < kCount; ++token) {
    backend_->recv(left.get(), buffers[token].data(), 4, token * 7919);
  }
  EXPECT_TRUE(nothing_ready_for(0));
  std::vector<uint64_t> order(kCount);
  for (uint64_t i = 0; i < kCount; ++i) order[i] = (i * 389) % kCount;  // a permutation
  for (uint64_t i : order) backend_->cancel(i * 7919);
  for (uint64_t i : order) backend_->cancel(i * 7919);  // twice: harmless
  for (uint64_t token = 0; token < kCount; ++token) {
    EXPECT_EQ(final_of(token * 7919).result, -ECANCELED);
  }
  EXPECT_EQ(backend_->in_flight(), 0u);
  EXPECT_TRUE(nothing_ready_for(0));
  backend_->recv(left.get(), buffers[0].data(), 4, 1);
  write_all(right.get(), "end");
  EXPECT_EQ(final_of(1).result, 3);
}

TEST_P(BackendTest, MultishotAcceptTakesABurstOfConnections) {
  UniqueFd listener = make_listener();
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 50; ++i) clients.push_back(connect_client(local_port(listener.get())));
  backend_->accept_multishot(listener.get(), 4);
  std::vector<UniqueFd> accepted;
  for (int i = 0; i < 50; ++i) {
    Completion completion = next(4);
    ASSERT_TRUE(completion.more) << completion.result;
    accepted.emplace_back(completion.result);
  }
  backend_->cancel(4);
  EXPECT_EQ(final_of(4).result, -ECANCELED);
}

TEST_P(BackendTest, RejectsABufferCountThatIsNotAPowerOfTwo) {
  BackendOptions bad = options();
  bad.buffer_count = 3;
  try {
    build(GetParam(), bad);
    FAIL() << "expected std::system_error";
  } catch (const std::system_error& error) {
    EXPECT_EQ(error.code().value(), EINVAL);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendTest,
                         ::testing::Values(BackendKind::io_uring, BackendKind::epoll),
                         [](const ::testing::TestParamInfo<BackendKind>& info) {
                           return std::string(backend_name(info.param));
                         });

TEST(MakeBackend, AutomaticChoiceGivesIoUringHere) {
  std::string reason = "untouched";
  std::unique_ptr<Backend> backend = make_backend(BackendOptions{}, &reason);
  EXPECT_EQ(backend->kind(), BackendKind::io_uring);
  EXPECT_EQ(reason, "untouched");
}

TEST(MakeBackend, ForcedChoicesAreHonoured) {
  BackendOptions options;
  options.choice = BackendChoice::epoll;
  EXPECT_EQ(make_backend(options)->kind(), BackendKind::epoll);
  options.choice = BackendChoice::io_uring;
  EXPECT_EQ(make_backend(options)->kind(), BackendKind::io_uring);
}

// In a child process whose seccomp filter makes io_uring_setup fail with EPERM (as Docker's
// default profile does), automatic choice falls back to epoll and forcing io_uring throws.
TEST(MakeBackend, FallsBackToEpollWhenIoUringIsRefused) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    sock_filter program[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog filter{static_cast<unsigned short>(std::size(program)), program};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(10);
    if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter) != 0) ::_exit(11);
    std::string reason;
    std::unique_ptr<Backend> backend = make_backend(BackendOptions{}, &reason);
    if (backend->kind() != BackendKind::epoll) ::_exit(12);
    if (reason != "io_uring_setup failed: Operation not permitted") ::_exit(13);
    BackendOptions forced;
    forced.choice = BackendChoice::io_uring;
    try {
      make_backend(forced);
      ::_exit(14);
    } catch (const std::system_error& error) {
      if (error.code().value() != EPERM) ::_exit(15);
    }
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(ParseBackendChoice, AcceptsTheKnownNames) {
  BackendChoice choice = BackendChoice::epoll;
  EXPECT_TRUE(parse_backend_choice("", choice));
  EXPECT_EQ(choice, BackendChoice::automatic);
  EXPECT_TRUE(parse_backend_choice("io_uring", choice));
  EXPECT_EQ(choice, BackendChoice::io_uring);
  EXPECT_TRUE(parse_backend_choice("epoll", choice));
  EXPECT_EQ(choice, BackendChoice::epoll);
  EXPECT_TRUE(parse_backend_choice("auto", choice));
  EXPECT_EQ(choice, BackendChoice::automatic);
  EXPECT_FALSE(parse_backend_choice("select", choice));
  EXPECT_FALSE(parse_backend_choice("IO_URING", choice));
  EXPECT_EQ(choice, BackendChoice::automatic);
}

TEST(BackendName, NamesBothKinds) {
  EXPECT_STREQ(backend_name(BackendKind::io_uring), "io_uring");
  EXPECT_STREQ(backend_name(BackendKind::epoll), "epoll");
}

}  // namespace
}  // namespace tf::core
