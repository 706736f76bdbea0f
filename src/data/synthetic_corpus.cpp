#include "data/synthetic_corpus.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "data/splitmix64.h"
#include "qianjun/error.h"

namespace qj {

SyntheticCorpus::SyntheticCorpus(const SyntheticCorpusSpec& spec) : spec_(spec) {
  QJ_CHECK(spec.vocab >= kCandidates + 1,
           "synthetic corpus: vocab must be at least 5, got " + std::to_string(spec.vocab));
  QJ_CHECK(spec.min_document >= 1 && spec.max_document >= spec.min_document,
           "synthetic corpus: need 1 <= min_document <= max_document, got " + std::to_string(spec.min_document) +
               ", " + std::to_string(spec.max_document));
  SplitMix64 rng(mix64(spec.seed));
  const auto vocab = static_cast<size_t>(spec.vocab);
  successors_.resize(vocab * kCandidates);
  rotations_.resize(vocab);
  for (size_t b = 0; b < vocab; ++b) {
    int32_t* chosen = &successors_[b * kCandidates];
    for (int slot = 0; slot < kCandidates; ++slot) {
      int32_t token;
      do {  // distinct content tokens, so each candidate's probability is exact
        token = 1 + static_cast<int32_t>(rng.below(vocab - 1));
      } while (std::find(chosen, chosen + slot, token) != chosen + slot);
      chosen[slot] = token;
    }
  }
  for (size_t a = 0; a < vocab; ++a) rotations_[a] = static_cast<uint8_t>(rng.below(kCandidates));
}

void SyntheticCorpus::next_token_distribution(int32_t two_back, int32_t previous, int32_t candidates[kCandidates],
                                              double probabilities[kCandidates]) const {
  QJ_CHECK(two_back >= 0 && two_back < spec_.vocab && previous >= 0 && previous < spec_.vocab,
           "synthetic corpus: context token outside the vocabulary");
  const int rotation = rotations_[static_cast<size_t>(two_back)];
  for (int slot = 0; slot < kCandidates; ++slot) {
    candidates[slot] = successors_[static_cast<size_t>(previous) * kCandidates + slot];
    probabilities[slot] = kProbabilities[(slot + rotation) % kCandidates];
  }
}

double SyntheticCorpus::content_entropy_nats() const {
  double entropy = 0;
  for (double p : kProbabilities) entropy -= p * std::log(p);
  return entropy;
}

double SyntheticCorpus::entropy_rate_nats() const {
  const double lengths = spec_.max_document - spec_.min_document + 1;
  const double mean_length = 0.5 * (spec_.min_document + spec_.max_document);
  return (std::log(lengths) + mean_length * content_entropy_nats()) / (mean_length + 1);
}

void SyntheticCorpus::generate(uint64_t num_tokens, uint64_t stream,
                               const std::function<void(std::span<const int32_t>)>& emit) const {
  SplitMix64 rng(mix64(spec_.seed) ^ mix64(0x5eedull + stream));
  std::vector<int32_t> document;
  document.reserve(static_cast<size_t>(spec_.max_document) + 1);
  int32_t two_back = kEndOfDocument, previous = kEndOfDocument;  // the stream starts as if after two documents
  uint64_t remaining = num_tokens;
  while (remaining > 0) {
    const auto span = static_cast<uint64_t>(spec_.max_document - spec_.min_document + 1);
    const uint64_t length = static_cast<uint64_t>(spec_.min_document) + rng.below(span);
    const uint64_t kept = std::min(length + 1, remaining);  // + the end-of-document token
    document.clear();
    for (uint64_t i = 0; i < kept; ++i) {
      int32_t token = kEndOfDocument;
      if (i < length) {
        const int rotation = rotations_[static_cast<size_t>(two_back)];
        const double u = rng.uniform();
        int slot = 0;
        double cumulative = kProbabilities[rotation];
        while (slot + 1 < kCandidates && u >= cumulative)
          cumulative += kProbabilities[(++slot + rotation) % kCandidates];
        token = successors_[static_cast<size_t>(previous) * kCandidates + slot];
      }
      document.push_back(token);
      two_back = previous;
      previous = token;
    }
    emit(document);
    remaining -= kept;
  }
}

std::vector<int32_t> SyntheticCorpus::generate_tokens(uint64_t num_tokens, uint64_t stream) const {
  std::vector<int32_t> tokens;
  tokens.reserve(num_tokens);
  generate(num_tokens, stream, [&](std::span<const int32_t> document) {
    tokens.insert(tokens.end(), document.begin(), document.end());
  });
  return tokens;
}

}  // namespace qj
