#include "train/preemption.h"

#include <unistd.h>

#include <csignal>
#include <cstring>

namespace qj {

namespace {

volatile std::sig_atomic_t received = 0;

void write_stderr(const char* text) {
  ssize_t ignored = write(STDERR_FILENO, text, std::strlen(text));
  (void)ignored;
}

// Async-signal-safe: a flag, write(2) and _exit(2) only.
void on_signal(int signal) {
  if (received != 0) {
    write_stderr("qianjun: second signal: exiting now; the last committed checkpoint is kept\n");
    _exit(128 + signal);
  }
  received = signal;
  write_stderr(signal == SIGINT
                   ? "qianjun: SIGINT: stopping at the end of this step with a checkpoint "
                     "(send it again to exit at once)\n"
                   : "qianjun: SIGTERM: stopping at the end of this step with a checkpoint "
                     "(send it again to exit at once)\n");
}

}  // namespace

void install_preemption_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // system calls in progress go on
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
}

int preemption_signal() { return received; }

const char* signal_name(int signal) {
  return signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "a signal";
}

}  // namespace qj
