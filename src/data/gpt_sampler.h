#pragma once
// GPT training samples from an indexed dataset (DESIGN.md, "The config file").
//
// The dataset's tokens are one stream (documents packed back to back). Window
// k is the seq_len + 1 tokens starting at token k * seq_len; a sample's inputs
// are a window's first seq_len tokens and its targets the last seq_len, so
// target j is the token after input j. Consecutive windows share one token.
//
// Samples are numbered across epochs: sample s belongs to epoch s / W and is
// the (s mod W)-th window of that epoch, W being the number of windows. Without
// shuffling, epochs visit windows in order; with shuffling, each epoch visits
// them in a permutation fixed by (seed, epoch): Fisher-Yates driven by
// SplitMix64, identical on every platform.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qj {

class IndexedDataset;

// A contiguous range of windows: a train or held-out validation view.
struct WindowRange {
  size_t first = 0;
  size_t count = 0;
};

// Windows of seq_len + 1 tokens, stride seq_len, that fit in num_tokens.
size_t count_windows(size_t num_tokens, int seq_len);

// Holds out the last `valid_fraction` of the windows (at least one window
// when the fraction is positive) for validation; train keeps the rest. Used
// when data.valid is "". Throws qj::Error if either part would be empty.
struct WindowSplit {
  WindowRange train;
  WindowRange valid;
};
WindowSplit hold_out_windows(size_t num_windows, double valid_fraction);

class GptSampler {
 public:
  // Samples from every window of `data`, which must outlive the sampler.
  GptSampler(const IndexedDataset& data, int seq_len, bool shuffle, uint64_t seed);
  // Samples from the windows in `windows` only (see hold_out_windows).
  GptSampler(const IndexedDataset& data, int seq_len, bool shuffle, uint64_t seed, WindowRange windows);

  // Samples per epoch: the number of windows in the view.
  size_t num_samples() const { return windows_.count; }
  int seq_len() const { return seq_len_; }
  // The dataset window that sample `sample` (counted across epochs) reads.
  size_t window_of(size_t sample) const;

  // Samples first_sample .. first_sample + count - 1 into inputs and targets,
  // each [count][seq_len]. Allocates nothing. Not thread-safe: the current
  // epoch's permutation is cached and rebuilt in place when the epoch changes.
  void fill_batch(size_t first_sample, int count, int32_t* inputs, int32_t* targets) const;

  // The first sample of micro-batch `micro_index` of dp rank `dp_rank` at
  // optimizer step `step`: step s takes samples s*global_batch ...
  // (s+1)*global_batch - 1, rank r the r-th contiguous share of those, and
  // micro-batch m the m-th run of micro_batch samples of that share.
  static size_t first_sample_of(int step, int global_batch, int dp_rank, int dp_size, int micro_index,
                                int micro_batch);

 private:
  void build_epoch_order(uint64_t epoch) const;

  const IndexedDataset& data_;
  int seq_len_;
  bool shuffle_;
  uint64_t seed_;
  WindowRange windows_;
  mutable std::vector<uint64_t> epoch_order_;  // window offsets in visiting order (shuffle only)
  mutable uint64_t order_epoch_ = 0;           // the epoch epoch_order_ belongs to
};

}  // namespace qj
