#include "data/tokenizer_pool.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "qianjun/error.h"

namespace qj {

TokenizerPool::TokenizerPool(const std::string& encoder_json, const std::string& vocab_bpe, int threads) {
  QJ_CHECK(threads >= 1, "TokenizerPool: threads must be at least 1, got " + std::to_string(threads));
  tokenizers_.emplace_back(encoder_json, vocab_bpe);
  while (int(tokenizers_.size()) < threads) tokenizers_.push_back(tokenizers_.front().clone_for_thread());
}

void TokenizerPool::encode(std::span<const TextDocument> documents, bool append_end_of_text,
                           std::vector<std::vector<int32_t>>& ids) {
  ids.resize(documents.size());
  std::atomic<size_t> next_document{0};
  std::atomic<bool> failed{false};
  std::mutex failure_mutex;
  size_t failed_document = documents.size();  // the first failing document, by index
  std::string failure;

  auto work = [&](Gpt2Tokenizer& tokenizer) {
    for (size_t i = next_document++; i < documents.size() && !failed; i = next_document++) {
      try {
        ids[i].clear();
        tokenizer.encode(documents[i].text, ids[i]);
        if (append_end_of_text) ids[i].push_back(tokenizer.end_of_text());
      } catch (const std::exception& e) {
        const std::lock_guard<std::mutex> lock(failure_mutex);
        if (i < failed_document) {
          failed_document = i;
          failure = documents[i].origin + ": cannot tokenize: " + e.what();
        }
        failed = true;
      }
    }
  };
  const int workers = int(std::min<size_t>(tokenizers_.size(), std::max<size_t>(documents.size(), 1)));
  std::vector<std::thread> helpers;
  for (int t = 1; t < workers; ++t) helpers.emplace_back(work, std::ref(tokenizers_[t]));
  work(tokenizers_[0]);
  for (std::thread& helper : helpers) helper.join();
  if (failed) throw Error(failure);
}

}  // namespace qj
