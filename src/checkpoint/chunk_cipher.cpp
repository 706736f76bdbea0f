// Checkpoint encryption on OpenSSL's EVP interface: AEAD seal/open of one
// chunk, the key from a file or the environment, SHA-256, hex.
#include "checkpoint/chunk_cipher.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <memory>
#include <optional>

#include "checkpoint/durable_file.h"
#include "qianjun/error.h"

namespace qj {

namespace {

// The oldest error OpenSSL queued, and the queue cleared for the next call.
std::string openssl_error() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no OpenSSL error queued";
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

void check_ssl(int ok, const char* step) {
  if (ok != 1) throw Error(std::string("checkpoint encryption: OpenSSL ") + step + " failed: " + openssl_error());
}

std::string openssl_version() { return OpenSSL_version(OPENSSL_VERSION); }

// Fetched once per process; null when this OpenSSL lacks the cipher.
const EVP_CIPHER* fetch_cipher(Encryption e) {
  static EVP_CIPHER* const aes = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  static EVP_CIPHER* const sm4 = EVP_CIPHER_fetch(nullptr, "SM4-GCM", nullptr);
  ERR_clear_error();  // a failed fetch queues an error that is not ours to report later
  if (e == Encryption::Aes256Gcm) return aes;
  if (e == Encryption::Sm4Gcm) return sm4;
  return nullptr;
}

const EVP_CIPHER* cipher_for(Encryption e) {
  require_cipher_available(e);
  return fetch_cipher(e);
}

int checked_int(size_t n, const char* what) {
  if (n > size_t(INT_MAX)) throw Error(std::string("checkpoint encryption: ") + what + " is too long");
  return int(n);
}

void check_key(Encryption e, const std::vector<uint8_t>& key) {
  if (e == Encryption::None) throw Error("checkpoint encryption: no cipher for checkpoint.encryption=none");
  if (key.size() != key_bytes(e))
    throw Error(std::string("checkpoint.encryption=") + encryption_name(e) + " needs a " +
                std::to_string(key_bytes(e)) + "-byte key, given " + std::to_string(key.size()) + " bytes");
}

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

// A context keyed with `key` and `iv` (12 bytes, GCM's default), aad absorbed.
CipherCtx start_cipher(Encryption e, const std::vector<uint8_t>& key, const uint8_t* iv, bool encrypt,
                       const std::string& aad) {
  check_key(e, key);
  const EVP_CIPHER* cipher = cipher_for(e);
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) throw Error("checkpoint encryption: out of memory for a cipher context");
  check_ssl(EVP_CipherInit_ex2(ctx.get(), cipher, key.data(), iv, encrypt ? 1 : 0, nullptr), "cipher init");
  if (!aad.empty()) {
    int absorbed = 0;
    check_ssl(EVP_CipherUpdate(ctx.get(), nullptr, &absorbed,
                               reinterpret_cast<const uint8_t*>(aad.data()), checked_int(aad.size(), "aad")),
              "aad update");
  }
  return ctx;
}

// EVP takes int lengths: a chunk goes through in steps of 1 GiB.
void cipher_update(EVP_CIPHER_CTX* ctx, const uint8_t* in, size_t bytes, uint8_t* out) {
  constexpr size_t kStep = size_t(1) << 30;
  while (bytes > 0) {
    const int step = int(std::min(bytes, kStep));
    int written = 0;
    check_ssl(EVP_CipherUpdate(ctx, out, &written, in, step), "cipher update");
    if (written != step) throw Error("checkpoint encryption: OpenSSL GCM update wrote fewer bytes than given");
    in += step;
    out += step;
    bytes -= size_t(step);
  }
}

// Decrypts into `out`; false when the tag does not authenticate (out is then zeroed).
bool try_open(Encryption e, const std::vector<uint8_t>& key, const std::string& aad, const SealInfo& info,
              const void* cipher, size_t bytes, void* out) {
  CipherCtx ctx = start_cipher(e, key, info.iv.data(), /*encrypt=*/false, aad);
  cipher_update(ctx.get(), static_cast<const uint8_t*>(cipher), bytes, static_cast<uint8_t*>(out));
  SealInfo copy = info;  // the ctrl call takes a non-const pointer
  check_ssl(EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, int(copy.tag.size()), copy.tag.data()),
            "set tag");
  uint8_t tail[16];
  int tail_bytes = 0;
  if (EVP_CipherFinal_ex(ctx.get(), tail, &tail_bytes) == 1) return true;
  ERR_clear_error();
  if (bytes > 0) OPENSSL_cleanse(out, bytes);  // never hand out unauthenticated plaintext
  return false;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string trim(const std::string& text) {
  const char* space = " \t\r\n\f\v";
  const size_t first = text.find_first_not_of(space);
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(space) - first + 1);
}

// Key text, zeroed when it goes out of scope.
struct WipedText {
  std::string text;
  ~WipedText() { OPENSSL_cleanse(text.data(), text.size()); }
};

// The key's hex text and where it came from (for messages), or throws when there is none.
std::string key_text(Encryption e, const std::string& key_file, std::string* source) {
  if (!key_file.empty()) {
    *source = "checkpoint.key_file " + key_file;
    try {
      return read_small_file(key_file);
    } catch (const Error& err) {
      throw Error(std::string("checkpoint.key_file: ") + err.what());
    }
  }
  *source = "QJ_CHECKPOINT_KEY";
  const char* env = std::getenv("QJ_CHECKPOINT_KEY");
  if (env == nullptr || trim(env).empty())
    throw Error(std::string("checkpoint.encryption=") + encryption_name(e) +
                " needs a key: set checkpoint.key_file or QJ_CHECKPOINT_KEY (hex)");
  return env;
}

}  // namespace

Encryption parse_encryption(const std::string& name, const std::string& field) {
  if (const std::optional<Encryption> e = from_string<Encryption>(name)) return *e;
  throw Error(field + "=\"" + name + "\" is not a known cipher; valid values: " +
              names_list<Encryption>());
}

const char* encryption_name(Encryption e) { return EnumNames<Encryption>::names[size_t(e)]; }

size_t key_bytes(Encryption e) {
  switch (e) {
    case Encryption::None: return 0;
    case Encryption::Aes256Gcm: return 32;
    case Encryption::Sm4Gcm: return 16;
  }
  return 0;
}

void require_cipher_available(Encryption e) {
  if (e == Encryption::None || fetch_cipher(e) != nullptr) return;
  if (e == Encryption::Sm4Gcm)
    throw Error("checkpoint.encryption=sm4-gcm: this OpenSSL (" + openssl_version() +
                ") has no SM4-GCM; sm4-gcm needs OpenSSL >= 3.2 built with SM4. "
                "Use checkpoint.encryption=aes-256-gcm meanwhile");
  throw Error("checkpoint.encryption=aes-256-gcm: this OpenSSL (" + openssl_version() +
              ") has no AES-256-GCM (is its default provider disabled in openssl.cnf?)");
}

std::vector<uint8_t> load_checkpoint_key(Encryption e, const std::string& key_file) {
  if (e == Encryption::None) return {};
  std::string source;
  const WipedText raw{key_text(e, key_file, &source)};
  const WipedText hex{trim(raw.text)};
  const std::string context = source + " (key for checkpoint.encryption=" + encryption_name(e) + ")";
  for (size_t i = 0; i < hex.text.size(); ++i)
    if (hex_digit(hex.text[i]) < 0)
      throw Error(context + ": character " + std::to_string(i + 1) + " is not a hex digit (0-9, a-f)");
  const size_t expected = 2 * key_bytes(e);
  if (hex.text.size() != expected)
    throw Error(context + ": expected " + std::to_string(expected) + " hex digits, found " +
                std::to_string(hex.text.size()));
  return from_hex(hex.text, context);
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) throw Error("sha256: out of memory for a digest context");
  if (EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx_);
    throw Error("sha256: OpenSSL digest init failed: " + openssl_error());
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::update(const void* data, size_t bytes) {
  if (!digest_.empty()) throw Error("sha256: update after hex_digest() finished the hash");
  check_ssl(EVP_DigestUpdate(ctx_, data, bytes), "sha256 update");
}

std::string Sha256::hex_digest() {
  if (!digest_.empty()) return digest_;
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  check_ssl(EVP_DigestFinal_ex(ctx_, md, &length), "sha256 final");
  digest_ = to_hex(md, length);
  return digest_;
}

std::string sha256_hex(const void* data, size_t bytes) {
  Sha256 hash;
  hash.update(data, bytes);
  return hash.hex_digest();
}

SealInfo seal_chunk(Encryption e, const std::vector<uint8_t>& key, const std::string& aad,
                    const void* plain, size_t bytes, void* out) {
  SealInfo info{};
  check_ssl(RAND_bytes(info.iv.data(), int(info.iv.size())), "RAND_bytes (IV)");
  CipherCtx ctx = start_cipher(e, key, info.iv.data(), /*encrypt=*/true, aad);
  cipher_update(ctx.get(), static_cast<const uint8_t*>(plain), bytes, static_cast<uint8_t*>(out));
  uint8_t tail[16];
  int tail_bytes = 0;
  check_ssl(EVP_CipherFinal_ex(ctx.get(), tail, &tail_bytes), "cipher final");
  check_ssl(EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, int(info.tag.size()), info.tag.data()),
            "get tag");
  return info;
}

void open_chunk(Encryption e, const std::vector<uint8_t>& key, const std::string& aad, const SealInfo& info,
                const void* cipher, size_t bytes, void* out, const std::string& what) {
  if (!try_open(e, key, aad, info, cipher, bytes, out))
    throw Error(what + " failed authentication: wrong key, or the chunk was modified, truncated or moved");
}

SealInfo make_key_check(Encryption e, const std::vector<uint8_t>& key, const std::string& checkpoint_id) {
  return seal_chunk(e, key, "qianjun key check " + checkpoint_id, nullptr, 0, nullptr);
}

bool key_matches(Encryption e, const std::vector<uint8_t>& key, const std::string& checkpoint_id,
                 const SealInfo& check) {
  return try_open(e, key, "qianjun key check " + checkpoint_id, check, nullptr, 0, nullptr);
}

std::string to_hex(const uint8_t* data, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string hex(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    hex[2 * i] = digits[data[i] >> 4];
    hex[2 * i + 1] = digits[data[i] & 15];
  }
  return hex;
}

std::vector<uint8_t> from_hex(const std::string& hex, const std::string& what) {
  if (hex.size() % 2 != 0)
    throw Error(what + ": hex text has an odd number of digits (" + std::to_string(hex.size()) + ")");
  std::vector<uint8_t> bytes(hex.size() / 2);
  for (size_t i = 0; i < bytes.size(); ++i) {
    const int high = hex_digit(hex[2 * i]), low = hex_digit(hex[2 * i + 1]);
    if (high < 0 || low < 0)
      throw Error(what + ": character " + std::to_string(high < 0 ? 2 * i + 1 : 2 * i + 2) +
                  " is not a hex digit (0-9, a-f)");
    bytes[i] = uint8_t(high * 16 + low);
  }
  return bytes;
}

}  // namespace qj
