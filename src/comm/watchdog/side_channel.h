#pragma once
// The watchdog's side channel: plain TCP between each rank and a hub on rank 0,
// carrying one JSON object per line. It shares nothing with the communicators it
// watches, so it still works while they are stuck, and the kernel closes a dead
// process's socket at once, which is how a killed rank is noticed.
#include <string>
#include <vector>

namespace qj {

// A connected socket exchanging '\n'-terminated lines.
class LineSocket {
 public:
  explicit LineSocket(int fd);
  ~LineSocket();
  LineSocket(const LineSocket&) = delete;
  LineSocket& operator=(const LineSocket&) = delete;

  int fd() const { return fd_; }
  // False when the peer is gone (or does not take the line within a second).
  bool send_line(const std::string& line);
  // Reads what has arrived without blocking and appends the complete lines;
  // false once the peer has closed the connection or it failed.
  bool read_available(std::vector<std::string>& lines);

 private:
  int fd_;
  std::string partial_;
};

// A listening socket on every interface; `port` 0 picks a free one, and the
// port taken is written back. Throws qj::Error.
int listen_tcp(int& port);
// Accepts one pending connection of `listener` (-1 when none).
int accept_tcp(int listener);
// Connects to host:port, retrying for up to `timeout_s`. Throws qj::Error.
int connect_tcp(const std::string& host, int port, double timeout_s);
// This machine's name, as other machines of the job can resolve it:
// QJ_WATCHDOG_HOST when set, else gethostname().
std::string watchdog_host_name();
// Waits until one of `fds` is readable or `timeout_s` passes; returns the
// readable ones' indexes.
std::vector<size_t> wait_readable(const std::vector<int>& fds, double timeout_s);

}  // namespace qj
