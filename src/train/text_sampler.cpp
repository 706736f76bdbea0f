#include "train/text_sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "checkpoint/hf_weights.h"
#include "core/memory_plan.h"
#include "data/splitmix64.h"
#include "model/model.h"
#include "qianjun/backend.h"
#include "qianjun/error.h"

namespace qj {

namespace {

// Picks the next token from the logits of the real vocabulary.
class TokenPicker {
 public:
  TokenPicker(double temperature, int top_k, uint64_t seed) : temperature_(temperature), top_k_(top_k), rng_(seed) {}

  int32_t pick(const std::vector<float>& logits) {
    const int32_t best = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (temperature_ == 0) return best;
    // Candidates: the top-k ids by logit (ties broken by id, so it is deterministic).
    order_.resize(logits.size());
    std::iota(order_.begin(), order_.end(), 0);
    const size_t k = top_k_ > 0 ? std::min(order_.size(), size_t(top_k_)) : order_.size();
    std::partial_sort(order_.begin(), order_.begin() + ptrdiff_t(k), order_.end(), [&](int32_t a, int32_t b) {
      return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    });
    // softmax((logit - max) / T) over the candidates, then one uniform draw.
    weights_.resize(k);
    double total = 0;
    for (size_t i = 0; i < k; ++i) total += weights_[i] = std::exp((double(logits[order_[i]]) - logits[best]) / temperature_);
    double draw = rng_.uniform() * total;
    for (size_t i = 0; i < k; ++i) {
      draw -= weights_[i];
      if (draw < 0) return order_[i];
    }
    return order_[k - 1];
  }

 private:
  double temperature_;
  int top_k_;
  SplitMix64 rng_;
  std::vector<int32_t> order_;
  std::vector<double> weights_;
};

// The first `count` logits of row `row` of the last forward: the ids the tokenizer knows.
void read_logits_row(const Model& model, const Backend& backend, int row, size_t count, std::vector<float>& out) {
  const Tensor logits = model.logits();
  const int64_t width = logits.dim(1);
  out.resize(count);
  const auto* base = static_cast<const char*>(logits.data) + size_t(row) * size_t(width) * sizeof(float);
  backend.copy_to_host(out.data(), base, out.size() * sizeof(float));
}

const Backend& sampling_backend(const Config& config) {
  try {
    return get_backend(config.backend.device);
  } catch (const Error& e) {
    throw Error("backend.device='" + config.backend.device + "': " + e.what());
  }
}

}  // namespace

void check_vocab_fits(const Config& config, size_t vocab_size) {
  if (size_t(config.model.vocab) < vocab_size)
    throw Error("model.vocab=" + std::to_string(config.model.vocab) + " is smaller than the tokenizer's " +
                std::to_string(vocab_size) + " tokens (" + config.tokenizer.encoder + ")");
}

TextSampler::TextSampler(const Config& config, const std::string& weights_path)
    : backend_(sampling_backend(config)), model_config_(config.model), plan_(std::make_unique<MemoryPlan>()) {
  Model::plan(config.model, /*micro_batch=*/1, *plan_);
  arenas_ = std::make_unique<Arenas>(*plan_, backend_);
  model_ = std::make_unique<Model>(config.model, 1, backend_, *arenas_);
  for (const ParamRef& p : model_->params()) backend_.fill(p.value, 0.f);  // padded rows stay 0
  import_hf_safetensors(weights_path, config.model, model_->params(), backend_);
}

TextSampler::~TextSampler() = default;

void TextSampler::generate(std::vector<int32_t>& context, const SamplingOptions& options, size_t vocab_size,
                           const std::function<void(const std::vector<int32_t>&)>& on_token) {
  QJ_CHECK(!context.empty(), "sampling needs at least one token of context");
  QJ_CHECK(options.temperature >= 0 && options.top_k >= 0 && options.tokens >= 0,
           "sampling: tokens, temperature and top_k must not be negative");
  vocab_size = std::min(vocab_size, size_t(model_config_.vocab));
  const int seq_len = model_config_.seq_len;
  std::vector<int32_t> window(static_cast<size_t>(seq_len));
  std::vector<float> logits;
  TokenPicker picker(options.temperature, options.top_k, options.seed);
  for (int t = 0; t < options.tokens; ++t) {
    // The last seq_len tokens from position 0, then padding: with causal
    // attention the logits at the last real position do not see the padding.
    const size_t length = std::min(context.size(), size_t(seq_len));
    std::fill(window.begin(), window.end(), 0);
    std::copy(context.end() - ptrdiff_t(length), context.end(), window.begin());
    model_->forward(window.data(), nullptr);
    read_logits_row(*model_, backend_, int(length) - 1, vocab_size, logits);
    context.push_back(picker.pick(logits));
    if (on_token) on_token(context);
  }
}

}  // namespace qj
