#pragma once
// SIGTERM and SIGINT (a scheduler's preemption, Ctrl-C): the first signal sets a
// flag that the trainer reads at the next step boundary, where every rank agrees
// on it, saves a checkpoint and exits with kExitPreempted. A second signal ends
// the process at once (exit 128 + signal); checkpoints are committed atomically,
// so the last committed one stays intact.
namespace qj {

// Installs the handlers (once per process).
void install_preemption_handlers();
// The first signal received (SIGTERM or SIGINT), or 0.
int preemption_signal();
// "SIGTERM" / "SIGINT".
const char* signal_name(int signal);

}  // namespace qj
