#include "data/gpt_sampler.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <numeric>

#include "data/indexed_dataset.h"
#include "data/splitmix64.h"
#include "qianjun/error.h"

namespace qj {

size_t count_windows(size_t num_tokens, int seq_len) {
  QJ_CHECK(seq_len > 0, "seq_len must be positive, got " + std::to_string(seq_len));
  return num_tokens == 0 ? 0 : (num_tokens - 1) / static_cast<size_t>(seq_len);
}

WindowSplit hold_out_windows(size_t num_windows, double valid_fraction) {
  QJ_CHECK(valid_fraction > 0.0 && valid_fraction < 1.0,
           "data.valid_fraction must be in (0, 1), got " + std::to_string(valid_fraction));
  size_t valid = static_cast<size_t>(std::floor(static_cast<double>(num_windows) * valid_fraction));
  valid = std::max<size_t>(valid, 1);
  if (valid >= num_windows)
    throw Error("data.valid_fraction=" + std::to_string(valid_fraction) + " of " + std::to_string(num_windows) +
                " windows leaves no training windows");
  const size_t train = num_windows - valid;
  return {WindowRange{0, train}, WindowRange{train, valid}};
}

GptSampler::GptSampler(const IndexedDataset& data, int seq_len, bool shuffle, uint64_t seed)
    : GptSampler(data, seq_len, shuffle, seed, WindowRange{0, count_windows(data.num_tokens(), seq_len)}) {}

GptSampler::GptSampler(const IndexedDataset& data, int seq_len, bool shuffle, uint64_t seed, WindowRange windows)
    : data_(data), seq_len_(seq_len), shuffle_(shuffle), seed_(seed), windows_(windows) {
  const size_t available = count_windows(data.num_tokens(), seq_len);
  if (available == 0)
    throw Error(data.prefix() + ": " + std::to_string(data.num_tokens()) +
                " tokens, fewer than one window of model.seq_len + 1 = " + std::to_string(seq_len + 1));
  if (windows.count == 0 || windows.first > available || windows.count > available - windows.first)
    throw Error(data.prefix() + ": window range [" + std::to_string(windows.first) + ", " +
                std::to_string(windows.first + windows.count) + ") is empty or outside the " +
                std::to_string(available) + " windows of seq_len " + std::to_string(seq_len));
  if (shuffle_) {
    epoch_order_.resize(windows_.count);
    build_epoch_order(0);
  }
}

void GptSampler::build_epoch_order(uint64_t epoch) const {
  std::iota(epoch_order_.begin(), epoch_order_.end(), uint64_t{0});
  SplitMix64 rng(mix64(seed_) ^ mix64(epoch + 1));
  for (size_t i = epoch_order_.size() - 1; i > 0; --i) std::swap(epoch_order_[i], epoch_order_[rng.below(i + 1)]);
  order_epoch_ = epoch;
}

size_t GptSampler::window_of(size_t sample) const {
  const uint64_t epoch = sample / windows_.count;
  const size_t position = sample % windows_.count;
  if (!shuffle_) return windows_.first + position;
  if (epoch != order_epoch_) build_epoch_order(epoch);
  return windows_.first + epoch_order_[position];
}

void GptSampler::fill_batch(size_t first_sample, int count, int32_t* inputs, int32_t* targets) const {
  const size_t len = static_cast<size_t>(seq_len_);
  for (int i = 0; i < count; ++i) {
    const size_t start = window_of(first_sample + static_cast<size_t>(i)) * len;
    data_.read_tokens(start, len, inputs + i * len);
    data_.read_tokens(start + 1, len, targets + i * len);
  }
}

size_t GptSampler::first_sample_of(int step, int global_batch, int dp_rank, int dp_size, int micro_index,
                                   int micro_batch) {
  QJ_CHECK(step >= 0 && global_batch > 0 && dp_size > 0 && micro_batch > 0 && micro_index >= 0,
           "first_sample_of: step, micro_index must be >= 0 and global_batch, dp_size, micro_batch > 0");
  QJ_CHECK(dp_rank >= 0 && dp_rank < dp_size,
           "first_sample_of: dp rank " + std::to_string(dp_rank) + " outside dp size " + std::to_string(dp_size));
  QJ_CHECK(global_batch % dp_size == 0, "train.global_batch=" + std::to_string(global_batch) +
                                            " is not divisible by the dp size " + std::to_string(dp_size));
  const size_t share = static_cast<size_t>(global_batch / dp_size);
  const size_t micro_first = static_cast<size_t>(micro_index) * static_cast<size_t>(micro_batch);
  QJ_CHECK(micro_first + static_cast<size_t>(micro_batch) <= share,
           "micro-batch " + std::to_string(micro_index) + " of " + std::to_string(micro_batch) +
               " samples runs past the rank's share of " + std::to_string(share) + " samples");
  return static_cast<size_t>(step) * static_cast<size_t>(global_batch) + static_cast<size_t>(dp_rank) * share +
         micro_first;
}

}  // namespace qj
