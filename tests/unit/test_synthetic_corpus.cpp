// The synthetic corpus: determinism, document structure, that its tokens
// follow the stated distribution, and its entropy rate against an independent
// derivation and against the measured log-loss of the true model.
#include <cmath>
#include <vector>

#include <catch2/catch.hpp>

#include "data/synthetic_corpus.h"
#include "qianjun/error.h"

namespace {

using qj::SyntheticCorpus;
using qj::SyntheticCorpusSpec;

SyntheticCorpusSpec small_spec() {
  SyntheticCorpusSpec spec;
  spec.vocab = 300;
  spec.seed = 5;
  spec.min_document = 20;
  spec.max_document = 60;
  return spec;
}

// Probability that a document's end-of-document token comes right after
// `position` content tokens, given it has not come yet (L uniform on [min, max]).
double end_hazard(const SyntheticCorpusSpec& spec, int position) {
  if (position < spec.min_document) return 0.0;
  return 1.0 / (spec.max_document - position + 1);
}

}  // namespace

TEST_CASE("the corpus is a deterministic function of seed and stream") {
  const SyntheticCorpus corpus(small_spec());
  const auto a = corpus.generate_tokens(5000, 1);
  CHECK(a.size() == 5000);
  CHECK(a == SyntheticCorpus(small_spec()).generate_tokens(5000, 1));
  CHECK(a != corpus.generate_tokens(5000, 2));
  SyntheticCorpusSpec other = small_spec();
  other.seed = 6;
  CHECK(a != SyntheticCorpus(other).generate_tokens(5000, 1));
  CHECK_THROWS_AS(SyntheticCorpus(SyntheticCorpusSpec{4, 1, 10, 20}), qj::Error);
}

TEST_CASE("documents have lengths in range, end with token 0 and contain no other 0") {
  const SyntheticCorpusSpec spec = small_spec();
  const SyntheticCorpus corpus(spec);
  std::vector<std::vector<int32_t>> documents;
  corpus.generate(20000, 1, [&](std::span<const int32_t> d) { documents.emplace_back(d.begin(), d.end()); });
  size_t total = 0;
  for (size_t i = 0; i < documents.size(); ++i) {
    const auto& d = documents[i];
    total += d.size();
    const bool last = i + 1 == documents.size();
    if (!last) {
      REQUIRE(d.size() >= static_cast<size_t>(spec.min_document) + 1);
      REQUIRE(d.size() <= static_cast<size_t>(spec.max_document) + 1);
      REQUIRE(d.back() == SyntheticCorpus::kEndOfDocument);
    }
    const size_t content = last && d.back() != 0 ? d.size() : d.size() - 1;
    for (size_t j = 0; j < content; ++j) REQUIRE((d[j] > 0 && d[j] < spec.vocab));
  }
  CHECK(total == 20000);
}

TEST_CASE("content tokens follow the order-2 distribution the corpus states") {
  const SyntheticCorpus corpus(small_spec());
  const auto tokens = corpus.generate_tokens(400000, 3);
  // How often the sampled token is the candidate of probability 0.6, 0.2 or 0.1.
  double count_by_probability[3] = {0, 0, 0};
  double content = 0;
  int32_t two_back = 0, previous = 0;
  for (int32_t token : tokens) {
    if (token != 0) {
      int32_t candidates[4];
      double probabilities[4];
      corpus.next_token_distribution(two_back, previous, candidates, probabilities);
      int slot = 0;
      while (slot < 4 && candidates[slot] != token) ++slot;
      REQUIRE(slot < 4);  // every content token is one of its context's candidates
      const double p = probabilities[slot];
      count_by_probability[p > 0.5 ? 0 : p > 0.15 ? 1 : 2] += 1;
      content += 1;
    }
    two_back = previous;
    previous = token;
  }
  // Binomial standard errors at this size are below 0.001.
  CHECK(count_by_probability[0] / content == Approx(0.6).margin(0.005));
  CHECK(count_by_probability[1] / content == Approx(0.2).margin(0.005));
  CHECK(count_by_probability[2] / content == Approx(0.2).margin(0.005));
}

TEST_CASE("entropy rate equals the per-position chain-rule sum and the true model's log-loss") {
  const SyntheticCorpusSpec spec = small_spec();
  const SyntheticCorpus corpus(spec);
  const double content_entropy = -(0.6 * std::log(0.6) + 0.2 * std::log(0.2) + 2 * 0.1 * std::log(0.1));
  CHECK(corpus.content_entropy_nats() == Approx(content_entropy).epsilon(1e-12));

  // Independent derivation: sum over positions of P(reach position) times the
  // entropy of "end here or emit a content token", divided by the mean tokens
  // per document (renewal argument).
  double document_entropy = 0, document_tokens = 0, reach = 1;
  for (int position = 0; position <= spec.max_document; ++position) {
    const double h = end_hazard(spec, position);
    const double binary = h <= 0 || h >= 1 ? 0 : -(h * std::log(h) + (1 - h) * std::log(1 - h));
    document_entropy += reach * (binary + (1 - h) * content_entropy);
    document_tokens += reach;
    reach *= 1 - h;
  }
  CHECK(corpus.entropy_rate_nats() == Approx(document_entropy / document_tokens).epsilon(1e-9));

  // The mean negative log-likelihood of generated text under the true process.
  const auto tokens = corpus.generate_tokens(1000000, 4);
  double nll = 0;
  int32_t two_back = 0, previous = 0;
  int position = 0;  // content tokens since the last end of document
  for (int32_t token : tokens) {
    const double h = end_hazard(spec, position);
    if (token == 0) {
      nll -= std::log(h);
      position = 0;
    } else {
      int32_t candidates[4];
      double probabilities[4];
      corpus.next_token_distribution(two_back, previous, candidates, probabilities);
      int slot = 0;
      while (candidates[slot] != token) ++slot;
      nll -= std::log((1 - h) * probabilities[slot]);
      ++position;
    }
    two_back = previous;
    previous = token;
  }
  CHECK(nll / tokens.size() == Approx(corpus.entropy_rate_nats()).margin(0.005));
}

TEST_CASE("the default corpus is far below log(vocab) and near 1.1 nats") {
  const SyntheticCorpus corpus(SyntheticCorpusSpec{});
  CHECK(corpus.entropy_rate_nats() == Approx(1.095).margin(0.001));
  CHECK(corpus.entropy_rate_nats() < std::log(2048.0) - 6);
}
