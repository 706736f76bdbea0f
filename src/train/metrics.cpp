#include "train/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "comm/world.h"
#include "qianjun/error.h"

namespace qj {

static std::string format_duration(double seconds) {
  const long s = long(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s / 60 % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

// JSON has no NaN or infinity: a non-finite value (a skipped step's) is null.
static std::string json_number(float value) {
  if (!std::isfinite(value)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6f", double(value));
  return buf;
}

// " | aux 0.0123" for a mixture-of-experts model.
static std::string aux_text(const StepStats& s) {
  if (!s.moe) return "";
  char buf[48];
  std::snprintf(buf, sizeof buf, " | aux %.4f", double(s.aux_loss));
  return buf;
}

Metrics::Metrics(int total_steps, double peak_flops, const std::string& jsonl_path, int log_every,
                 bool append_jsonl)
    : total_steps_(total_steps),
      peak_flops_(peak_flops),
      log_every_(std::max(1, log_every)),
      // mpirun hands rank 0 a pseudo-terminal even when its own output goes to a
      // file, so under a launcher the log is plain lines.
      terminal_(isatty(fileno(stdout)) && !launched_by_mpi_launcher()),
      jsonl_path_(jsonl_path) {
  if (!jsonl_path.empty()) {
    jsonl_ = std::fopen(jsonl_path.c_str(), append_jsonl ? "a" : "w");
    if (!jsonl_) throw Error("--metrics-jsonl: cannot open '" + jsonl_path + "' for writing");
  }
}

Metrics::~Metrics() {
  if (jsonl_) std::fclose(jsonl_);
}

void Metrics::on_step(const StepStats& s) {
  ++steps_seen_;
  elapsed_ += s.seconds;
  if (s.skipped) ++bad_steps_;
  else last_loss_ = s.loss;
  if (steps_seen_ > 1 || total_steps_ == 1) {
    timed_seconds_ += s.seconds;
    timed_tokens_ += s.tokens;
    timed_flops_ += s.flops;
  }
  const double tokens_per_s = s.tokens / s.seconds;
  const double mfu = peak_flops_ > 0 ? s.flops / s.seconds / peak_flops_ : 0.0;
  warn_if_peak_stale(mfu);
  if (jsonl_) {
    std::string aux = s.moe ? ", \"aux_loss\": " + json_number(s.aux_loss) : "";
    if (s.expert_parallel) aux += ", \"all_to_all_bytes\": " + std::to_string(int64_t(s.all_to_all_bytes));
    std::fprintf(jsonl_,
                 "{\"step\": %d, \"loss\": %s%s, \"lr\": %.6e, \"grad_norm\": %s, "
                 "\"ms\": %.3f, \"tokens_per_s\": %.1f, \"mfu\": %.5f, \"skipped\": %s, "
                 "\"bad_steps\": %d}\n",
                 s.step, json_number(s.loss).c_str(), aux.c_str(), s.lr,
                 json_number(s.grad_norm).c_str(), s.seconds * 1e3, tokens_per_s, mfu,
                 s.skipped ? "true" : "false", bad_steps_);
    std::fflush(jsonl_);
  }
  if (s.skipped) {
    if (terminal_) std::printf("\r\033[K");
    std::printf("step %d skipped: loss %g, gradient norm %g (not finite): no parameter or moment "
                "changed (%d bad steps so far)\n", s.step, double(s.loss), double(s.grad_norm),
                bad_steps_);
    std::fflush(stdout);
  } else if (terminal_) print_bar(s, tokens_per_s, mfu);
  else if (s.step % log_every_ == 0 || s.step == total_steps_ || s.step == 1)
    print_line(s, tokens_per_s, mfu);
}

void Metrics::warn_if_peak_stale(double mfu) {
  if (mfu <= 1.0 || warned_peak_) return;
  warned_peak_ = true;
  if (terminal_) std::printf("\r\033[K");
  std::fflush(stdout);
  std::fprintf(stderr,
               "warning: MFU %.0f%% is above 100%%: the peak the backend reported (%.4g GFLOP/s for "
               "the job) is stale or was measured on a busy machine; the cpu backend caches it in "
               "cpu_peak_flops.json beside the program: delete that file to measure again\n",
               100 * mfu, peak_flops_ / 1e9);
  std::fflush(stderr);
}

void Metrics::print_line(const StepStats& s, double tokens_per_s, double mfu) {
  std::printf("step %*d/%d | loss %.4f%s | lr %.2e | grad norm %.3f | %.1f ms | %.0f tok/s | MFU %.1f%%\n",
              int(std::to_string(total_steps_).size()), s.step, total_steps_, s.loss,
              aux_text(s).c_str(), s.lr, s.grad_norm, s.seconds * 1e3, tokens_per_s, 100 * mfu);
  std::fflush(stdout);
}

void Metrics::print_bar(const StepStats& s, double tokens_per_s, double mfu) {
  constexpr int kWidth = 24;
  const int filled = int(double(kWidth) * s.step / total_steps_);
  char bar[kWidth + 1];
  for (int i = 0; i < kWidth; ++i) bar[i] = i < filled ? '#' : '.';
  bar[kWidth] = '\0';
  const double eta = elapsed_ / steps_seen_ * (total_steps_ - s.step);
  std::printf("\r[%s] %d/%d | loss %.4f%s | lr %.2e | gnorm %.2f | %.0f ms | %.0f tok/s | MFU %.1f%% | ETA %s \033[K",
              bar, s.step, total_steps_, s.loss, aux_text(s).c_str(), s.lr, s.grad_norm, s.seconds * 1e3,
              tokens_per_s, 100 * mfu, format_duration(eta).c_str());
  if (s.step == total_steps_) std::printf("\n");
  std::fflush(stdout);
}

void Metrics::on_eval(int step, float valid_loss) {
  best_valid_ = have_valid_ ? std::min(best_valid_, valid_loss) : valid_loss;
  have_valid_ = true;
  if (terminal_) std::printf("\r\033[K");
  std::printf("step %d | validation loss %.4f\n", step, valid_loss);
  std::fflush(stdout);
  if (jsonl_) {
    std::fprintf(jsonl_, "{\"step\": %d, \"valid_loss\": %.6f}\n", step, valid_loss);
    std::fflush(jsonl_);
  }
}

void Metrics::summary() {
  const double tokens_per_s = timed_seconds_ > 0 ? timed_tokens_ / timed_seconds_ : 0.0;
  const double mfu = timed_seconds_ > 0 && peak_flops_ > 0 ? timed_flops_ / timed_seconds_ / peak_flops_ : 0.0;
  std::printf("done: %d steps in %s | final loss %.4f", steps_seen_, format_duration(elapsed_).c_str(),
              last_loss_);
  if (have_valid_) std::printf(" | best validation loss %.4f", best_valid_);
  if (bad_steps_ > 0) std::printf(" | %d bad steps skipped", bad_steps_);
  warn_if_peak_stale(mfu);
  std::printf(" | %.0f tok/s | MFU %.1f%%\n", tokens_per_s, 100 * mfu);
  std::fflush(stdout);
}

}  // namespace qj
