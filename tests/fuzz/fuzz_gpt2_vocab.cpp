// Loading a GPT-2 vocabulary (Gpt2Tokenizer's constructor: encoder.json and
// vocab.bpe). Input: the encoder.json text, a NUL byte, the vocab.bpe text.
// A vocabulary that loads encodes text, and decoding gives the text back.
#include "data/gpt2_tokenizer.h"
#include "data/utf8.h"
#include "fuzz_input.h"
#include "qianjun/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = qj::fuzz::as_text(data, size);
  const size_t nul = input.find('\0');
  const std::string encoder = qj::fuzz::scratch().write("encoder.json", input.substr(0, nul));
  const std::string merges = qj::fuzz::scratch().write(
      "vocab.bpe", nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1));
  try {
    qj::Gpt2Tokenizer tokenizer(encoder, merges);
    const std::string_view sample = "The theory of everything's 12 rings, thinking\n\n  in\xff 日本語!";
    const std::vector<int32_t> ids = tokenizer.encode(sample);
    QJ_FUZZ_ASSERT(tokenizer.decode(ids) == qj::utf8::replace_invalid(sample));
    QJ_FUZZ_ASSERT(tokenizer.end_of_text() >= 0 && size_t(tokenizer.end_of_text()) < tokenizer.vocab_size());
  } catch (const qj::Error&) {
  }
  return 0;
}
