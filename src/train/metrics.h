#pragma once
// What the trainer reports: a line per step (or a live progress bar on a
// terminal), validation losses, a JSONL record per step, a final summary.
#include <cstdio>
#include <string>

namespace qj {

struct StepStats {
  int step = 0;  // 1-based
  float loss = 0;      // language-model cross-entropy
  bool moe = false;    // a mixture-of-experts model: aux_loss is reported
  float aux_loss = 0;  // its load-balancing loss, which the gradients include
  bool expert_parallel = false;  // parallel.ep > 1: all_to_all_bytes is reported
  double all_to_all_bytes = 0;   // sent to other ranks by the step's all-to-alls, all ranks
  float grad_norm = 0;
  double lr = 0;
  double seconds = 0;
  double tokens = 0;
  double flops = 0;  // model FLOPs of the step
  // This rank's pipeline schedule: computing, and waiting for a neighbour stage.
  double busy_seconds = 0, idle_seconds = 0;
  // The loss or the gradient norm was not finite: no parameter or moment changed.
  bool skipped = false;
};

class Metrics {
 public:
  // append_jsonl: a resumed run adds its records to those of the run it continues.
  Metrics(int total_steps, double peak_flops, const std::string& jsonl_path, int log_every,
          bool append_jsonl = false);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  void on_step(const StepStats& s);
  void on_eval(int step, float valid_loss);
  void summary();

 private:
  void print_line(const StepStats& s, double tokens_per_s, double mfu);
  void print_bar(const StepStats& s, double tokens_per_s, double mfu);
  // MFU above 100% means the peak is wrong, not the step: said once, on stderr.
  void warn_if_peak_stale(double mfu);

  int total_steps_;
  double peak_flops_;
  int log_every_;
  bool terminal_;
  FILE* jsonl_ = nullptr;
  std::string jsonl_path_;
  // running totals for the summary; the first step (warm-up) is left out of the rates
  double elapsed_ = 0, timed_seconds_ = 0, timed_tokens_ = 0, timed_flops_ = 0;
  float last_loss_ = 0, best_valid_ = 0;
  bool have_valid_ = false;
  int steps_seen_ = 0;
  int bad_steps_ = 0;  // skipped steps of this run
  bool warned_peak_ = false;
};

}  // namespace qj
