#pragma once
// Continuing a prompt with a trained model (what qj-sample does): the model of a
// config's model section, on one device, with the weights of a Hugging Face
// safetensors file. Each new token runs the whole forward over the last seq_len
// tokens (no KV cache: fine for a small model). Temperature 0 picks the most
// likely token (greedy, deterministic); otherwise tokens are drawn from
// softmax(logits / T) restricted to the top-k (0: all), with a generator seeded
// by `seed`, so a seed always gives the same tokens.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"

namespace qj {

class Arenas;
class Backend;
class Model;
class MemoryPlan;

struct SamplingOptions {
  int tokens = 64;
  double temperature = 0.8;
  int top_k = 40;
  uint64_t seed = 1234;
};

class TextSampler {
 public:
  // Throws qj::Error for a backend that does not exist or weights that do not
  // match the model (naming the file and the tensor).
  TextSampler(const Config& config, const std::string& weights_path);
  ~TextSampler();

  // Appends options.tokens ids to `context` (the prompt's ids, at least one),
  // drawn from the first `vocab_size` logits (the ids the tokenizer knows);
  // after each one calls on_token(context) when given.
  void generate(std::vector<int32_t>& context, const SamplingOptions& options, size_t vocab_size,
                const std::function<void(const std::vector<int32_t>&)>& on_token = {});

 private:
  const Backend& backend_;
  ModelConfig model_config_;
  std::unique_ptr<MemoryPlan> plan_;
  std::unique_ptr<Arenas> arenas_;
  std::unique_ptr<Model> model_;
};

// Checks that the model can emit every id of a tokenizer of `vocab_size` tokens.
void check_vocab_fits(const Config& config, size_t vocab_size);

}  // namespace qj
