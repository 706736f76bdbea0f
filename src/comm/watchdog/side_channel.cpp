#include "comm/watchdog/side_channel.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "qianjun/error.h"

namespace qj {

LineSocket::LineSocket(int fd) : fd_(fd) {
  timeval send_timeout{1, 0};
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

LineSocket::~LineSocket() {
  if (fd_ >= 0) close(fd_);
}

bool LineSocket::send_line(const std::string& line) {
  const std::string data = line + "\n";
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += size_t(n);
  }
  return true;
}

bool LineSocket::read_available(std::vector<std::string>& lines) {
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n <= 0) return false;
    partial_.append(buffer, size_t(n));
    size_t end;
    while ((end = partial_.find('\n')) != std::string::npos) {
      lines.push_back(partial_.substr(0, end));
      partial_.erase(0, end + 1);
    }
  }
}

int listen_tcp(int& port) {
  const int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const bool v6 = fd >= 0;
  const int listener = v6 ? fd : socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) throw Error(std::string("watchdog: socket() failed: ") + std::strerror(errno));
  int one = 1, zero = 0;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc;
  if (v6) {
    setsockopt(listener, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);  // IPv4 too
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_addr = in6addr_any;
    address.sin6_port = htons(uint16_t(port));
    rc = bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address);
  } else {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_ANY);
    address.sin_port = htons(uint16_t(port));
    rc = bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address);
  }
  if (rc != 0 || listen(listener, 1024) != 0) {
    const std::string reason = std::strerror(errno);
    close(listener);
    throw Error("watchdog: cannot listen on TCP port " + std::to_string(port) + ": " + reason +
                " (set QJ_WATCHDOG_PORT to a free port)");
  }
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &length);
  port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                     : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return listener;
}

int accept_tcp(int listener) {
  // Blocking, so that a send waits (up to SO_SNDTIMEO); reads use MSG_DONTWAIT.
  return accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
}

int connect_tcp(const std::string& host, int port, double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  std::string last_error;
  for (;;) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
    if (rc != 0) {
      last_error = gai_strerror(rc);
    } else {
      for (addrinfo* a = found; a; a = a->ai_next) {
        const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
          freeaddrinfo(found);
          return fd;
        }
        last_error = std::strerror(errno);
        close(fd);
      }
      freeaddrinfo(found);
    }
    if (std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw Error("watchdog: cannot connect to rank 0's watchdog at " + host + ":" +
              std::to_string(port) + ": " + last_error +
              " (set QJ_WATCHDOG_HOST to an address of rank 0's machine that every rank can reach)");
}

std::string watchdog_host_name() {
  if (const char* host = std::getenv("QJ_WATCHDOG_HOST"); host && *host) return host;
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

std::vector<size_t> wait_readable(const std::vector<int>& fds, double timeout_s) {
  std::vector<pollfd> polled(fds.size());
  for (size_t i = 0; i < fds.size(); ++i) polled[i] = pollfd{fds[i], POLLIN, 0};
  std::vector<size_t> ready;
  const int n = poll(polled.data(), polled.size(), int(timeout_s * 1000));
  if (n <= 0) return ready;
  for (size_t i = 0; i < polled.size(); ++i)
    if (polled[i].revents & (POLLIN | POLLHUP | POLLERR)) ready.push_back(i);
  return ready;
}

}  // namespace qj
