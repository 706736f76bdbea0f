#include "data/gpt2_tokenizer.h"

#include <memory>
#include <utility>

#include "data/bpe_merge.h"
#include "data/bpe_word_cache.h"
#include "data/gpt2_pretokenizer.h"
#include "data/gpt2_vocab.h"
#include "data/utf8.h"
#include "qianjun/error.h"

namespace qj {

namespace {
// Longer pieces are rare and seldom repeat: merged each time, not cached.
constexpr size_t kMaxCachedPieceBytes = 128;
}  // namespace

struct Gpt2Tokenizer::Impl {
  explicit Impl(std::shared_ptr<const Gpt2Vocab> shared_vocab) : vocab(std::move(shared_vocab)) {}

  std::shared_ptr<const Gpt2Vocab> vocab;
  BpeWordCache cache;
  std::vector<int32_t> symbols;
  BpeScratch scratch;

  void encode_piece(std::string_view piece, std::vector<int32_t>& out);
};

void Gpt2Tokenizer::Impl::encode_piece(std::string_view piece, std::vector<int32_t>& out) {
  if (piece.size() == 1) {
    out.push_back(vocab->byte_ids[static_cast<unsigned char>(piece[0])]);
    return;
  }
  const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
  const uint64_t hash = cacheable ? BpeWordCache::hash(piece) : 0;
  if (cacheable) {
    const auto cached = cache.find(piece, hash);
    if (cached.size() == 1) {
      out.push_back(cached[0]);
      return;
    }
    if (!cached.empty()) {
      out.insert(out.end(), cached.begin(), cached.end());
      return;
    }
  }
  symbols.clear();
  for (const char byte : piece) symbols.push_back(vocab->byte_ids[static_cast<unsigned char>(byte)]);
  bpe_merge(vocab->merges, symbols, scratch);
  out.insert(out.end(), symbols.begin(), symbols.end());
  if (cacheable) cache.insert(piece, hash, symbols);
}

Gpt2Tokenizer::Gpt2Tokenizer(const std::string& encoder_json_path,
                             const std::string& vocab_bpe_path)
    : impl_(new Impl(std::make_shared<const Gpt2Vocab>(
          Gpt2Vocab::load(encoder_json_path, vocab_bpe_path)))) {}

Gpt2Tokenizer::Gpt2Tokenizer(Impl* impl) : impl_(impl) {}

Gpt2Tokenizer::~Gpt2Tokenizer() { delete impl_; }

Gpt2Tokenizer::Gpt2Tokenizer(Gpt2Tokenizer&& other) noexcept
    : impl_(std::exchange(other.impl_, nullptr)) {}

Gpt2Tokenizer& Gpt2Tokenizer::operator=(Gpt2Tokenizer&& other) noexcept {
  if (this != &other) {
    delete impl_;
    impl_ = std::exchange(other.impl_, nullptr);
  }
  return *this;
}

Gpt2Tokenizer Gpt2Tokenizer::clone_for_thread() const {
  return Gpt2Tokenizer(new Impl(impl_->vocab));
}

// The reference encoder works on JavaScript strings, and text reaches it
// through Node's UTF-8 decoding (Buffer.toString('utf8'), fs.readFileSync(path,
// 'utf8'), TextDecoder): each maximal invalid subpart of the bytes becomes one
// U+FFFD, and a leading byte order mark stays in the text. We decode the same
// way, so both give the same ids for the same bytes; U+FFFD then encodes as
// its UTF-8 bytes EF BF BD.
void Gpt2Tokenizer::encode(std::string_view text, std::vector<int32_t>& out) {
  std::string repaired;
  if (utf8::valid_prefix_length(text) != text.size()) {
    repaired = utf8::replace_invalid(text);
    text = repaired;
  }
  for (size_t begin = 0; begin < text.size();) {
    const size_t end = gpt2_piece_end(text, begin);
    impl_->encode_piece(text.substr(begin, end - begin), out);
    begin = end;
  }
}

std::vector<int32_t> Gpt2Tokenizer::encode(std::string_view text) {
  std::vector<int32_t> ids;
  encode(text, ids);
  return ids;
}

std::string Gpt2Tokenizer::decode(std::span<const int32_t> ids) const {
  const auto& token_bytes = impl_->vocab->token_bytes;
  std::string text;
  for (const int32_t id : ids) {
    if (id < 0 || size_t(id) >= token_bytes.size())
      throw Error("Gpt2Tokenizer::decode: id " + std::to_string(id) + " is outside the vocabulary [0, " +
                  std::to_string(token_bytes.size()) + ")");
    text += token_bytes[id];
  }
  return text;
}

int32_t Gpt2Tokenizer::end_of_text() const { return impl_->vocab->end_of_text; }

size_t Gpt2Tokenizer::vocab_size() const { return impl_->vocab->token_bytes.size(); }

std::string_view Gpt2Tokenizer::token_bytes(int32_t id) const {
  const auto& token_bytes = impl_->vocab->token_bytes;
  QJ_CHECK(id >= 0 && size_t(id) < token_bytes.size(),
           "Gpt2Tokenizer::token_bytes: id " + std::to_string(id) + " is outside the vocabulary");
  return token_bytes[id];
}

}  // namespace qj
