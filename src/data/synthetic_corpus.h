#pragma once
// A synthetic corpus with a known best achievable loss, for testing training.
//
// The process: documents of L content tokens, L uniform in
// [min_document, max_document], each followed by the end-of-document token 0.
// A content token depends on the two tokens before it in the stream, (a, b):
// b picks 4 distinct candidate tokens (from 1 .. vocab-1) and a picks which
// rotation of the fixed probabilities (0.6, 0.2, 0.1, 0.1) they get. A model
// that sees only b can reach ln 4 per content token; one that also sees a
// reaches H(p) = 1.089 nats. The tables are random but fixed by the seed.
//
// Entropy rate: given the full past, the position in the document is known,
// so the end-of-document decisions of one document carry H(L) = ln(number of
// lengths) nats in total and each content token H(p). Per token (renewal):
//   rate = (ln(max - min + 1) + E[L] * H(p)) / (E[L] + 1).
#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace qj {

struct SyntheticCorpusSpec {
  int vocab = 2048;
  uint64_t seed = 1;
  int min_document = 100;   // content tokens, before the end-of-document token
  int max_document = 2000;
};

class SyntheticCorpus {
 public:
  static constexpr int32_t kEndOfDocument = 0;
  static constexpr int kCandidates = 4;
  static constexpr std::array<double, kCandidates> kProbabilities = {0.6, 0.2, 0.1, 0.1};

  // Throws qj::Error for a vocab below 5 or an empty length range.
  explicit SyntheticCorpus(const SyntheticCorpusSpec& spec);

  const SyntheticCorpusSpec& spec() const { return spec_; }
  // The distribution of a content token after stream tokens (two_back, previous).
  void next_token_distribution(int32_t two_back, int32_t previous, int32_t candidates[kCandidates],
                               double probabilities[kCandidates]) const;
  // H(p): entropy of one content token given its context, in nats.
  double content_entropy_nats() const;
  // The exact entropy rate of the process, in nats per token (see above).
  double entropy_rate_nats() const;

  // Generates exactly num_tokens tokens, handing each document to `emit` (the
  // last one cut short when the budget ends inside it). `stream` selects an
  // independent random stream of the same process: e.g. 1 train, 2 valid.
  void generate(uint64_t num_tokens, uint64_t stream,
                const std::function<void(std::span<const int32_t>)>& emit) const;
  std::vector<int32_t> generate_tokens(uint64_t num_tokens, uint64_t stream) const;

 private:
  SyntheticCorpusSpec spec_;
  std::vector<int32_t> successors_;  // [vocab][kCandidates]: candidates after token b
  std::vector<uint8_t> rotations_;   // [vocab]: probability rotation chosen by token a
};

}  // namespace qj
