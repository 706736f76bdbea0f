#pragma once
// Checkpoint encryption: each chunk of a tensor is sealed on its own with an
// AEAD cipher (AES-256-GCM, or SM4-GCM where OpenSSL has it), a fresh random
// 12-byte IV and a 16-byte tag; the associated data names where the chunk
// belongs, so a chunk moved to another place fails authentication. Also the
// key (hex, from a file or QJ_CHECKPOINT_KEY), SHA-256, and hex helpers.
// All of it is OpenSSL's libcrypto; nothing cryptographic is written here.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/config_enums.h"  // Encryption

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace qj {

// "none" | "aes-256-gcm" | "sm4-gcm"; anything else throws naming `field`.
Encryption parse_encryption(const std::string& name,
                            const std::string& field = "checkpoint.encryption");
const char* encryption_name(Encryption e);
// Key bytes a cipher needs: 32 for AES-256-GCM, 16 for SM4-GCM, 0 for None.
size_t key_bytes(Encryption e);
// Throws if this OpenSSL cannot do `e` (SM4-GCM needs OpenSSL >= 3.2).
void require_cipher_available(Encryption e);

// The key as hex text (whitespace around it ignored, either case) from
// `key_file` if non-empty, else from $QJ_CHECKPOINT_KEY. None -> empty.
// Error messages never contain key material.
std::vector<uint8_t> load_checkpoint_key(Encryption e, const std::string& key_file);

// Incremental SHA-256 (OpenSSL EVP).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t bytes);
  std::string hex_digest();  // lowercase, 64 chars; finishes the hash

 private:
  evp_md_ctx_st* ctx_;
  std::string digest_;  // set once finished
};
std::string sha256_hex(const void* data, size_t bytes);

// One authenticated-encryption operation per chunk.
struct SealInfo {
  std::array<uint8_t, 12> iv;
  std::array<uint8_t, 16> tag;
};
// Encrypts `bytes` bytes of `plain` into `out` (out may equal plain) with
// `aad` as associated data, under a fresh random IV.
SealInfo seal_chunk(Encryption e, const std::vector<uint8_t>& key, const std::string& aad,
                    const void* plain, size_t bytes, void* out);
// Decrypts and authenticates (out may equal cipher). On a tag mismatch throws
// "<what> failed authentication: wrong key, or the chunk was modified,
// truncated or moved".
void open_chunk(Encryption e, const std::vector<uint8_t>& key, const std::string& aad,
                const SealInfo& info, const void* cipher, size_t bytes, void* out,
                const std::string& what);

// A seal of no bytes with aad "qianjun key check " + checkpoint_id, stored in
// the manifest, so that a wrong key is reported before any chunk is read.
SealInfo make_key_check(Encryption e, const std::vector<uint8_t>& key,
                        const std::string& checkpoint_id);
bool key_matches(Encryption e, const std::vector<uint8_t>& key, const std::string& checkpoint_id,
                 const SealInfo& check);

// Lowercase hex; from_hex accepts either case and throws naming `what`
// (never quoting the text, which may be a key).
std::string to_hex(const uint8_t* data, size_t n);
std::vector<uint8_t> from_hex(const std::string& hex, const std::string& what);

}  // namespace qj
