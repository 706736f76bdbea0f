// Checkpoint encryption and durable files. References are independent of our
// code: SHA-256 against the sha256sum command, AES-256-GCM against test case
// 16 of the GCM specification (McGrew and Viega), whose ciphertext and tag
// are written out below.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "checkpoint/chunk_cipher.h"
#include "checkpoint/durable_file.h"
#include "qianjun/error.h"

using Catch::Matchers::Contains;
using qj::Encryption;
namespace fs = std::filesystem;

namespace {

// A fresh folder for one test, removed after it.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / ("qj_test_crypto_" + std::to_string(getpid()) + "_" + name)) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(n);
  for (auto& b : bytes) b = uint8_t(rng());
  return bytes;
}

std::vector<uint8_t> hex(const std::string& text) { return qj::from_hex(text, "test vector"); }

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const qj::Error& e) {
    return e.what();
  }
  FAIL("expected a qj::Error");
  return "";
}

// Sets or unsets QJ_CHECKPOINT_KEY for one test, restoring it after.
struct KeyEnv {
  std::string saved;
  bool had;
  explicit KeyEnv(const char* value) {
    const char* old = std::getenv("QJ_CHECKPOINT_KEY");
    had = old != nullptr;
    if (had) saved = old;
    if (value) setenv("QJ_CHECKPOINT_KEY", value, 1);
    else unsetenv("QJ_CHECKPOINT_KEY");
  }
  ~KeyEnv() {
    if (had) setenv("QJ_CHECKPOINT_KEY", saved.c_str(), 1);
    else unsetenv("QJ_CHECKPOINT_KEY");
  }
};

const std::vector<uint8_t> kKey = random_bytes(32, 7);
const std::string kKeyHex = qj::to_hex(kKey.data(), kKey.size());

}  // namespace

TEST_CASE("encryption names parse, and an unknown one names the field and the valid values") {
  CHECK(qj::parse_encryption("none") == Encryption::None);
  CHECK(qj::parse_encryption("aes-256-gcm") == Encryption::Aes256Gcm);
  CHECK(qj::parse_encryption("sm4-gcm") == Encryption::Sm4Gcm);
  for (Encryption e : {Encryption::None, Encryption::Aes256Gcm, Encryption::Sm4Gcm})
    CHECK(qj::parse_encryption(qj::encryption_name(e)) == e);
  CHECK(qj::key_bytes(Encryption::Aes256Gcm) == 32);
  CHECK(qj::key_bytes(Encryption::Sm4Gcm) == 16);
  CHECK(qj::key_bytes(Encryption::None) == 0);
  const std::string msg = error_of([] { qj::parse_encryption("AES", "save.encryption"); });
  CHECK_THAT(msg, Contains("save.encryption") && Contains("aes-256-gcm") && Contains("sm4-gcm"));
}

TEST_CASE("sha256 matches the sha256sum command, fed in uneven pieces") {
  TempDir dir("sha");
  const auto data = random_bytes(1000003, 1);
  const std::string path = dir.file("data.bin");
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), data.size());
  FILE* pipe = popen(("sha256sum '" + path + "'").c_str(), "r");
  REQUIRE(pipe != nullptr);
  char line[128] = {};
  REQUIRE(std::fgets(line, sizeof line, pipe) != nullptr);
  pclose(pipe);
  const std::string expected(line, 64);

  qj::Sha256 hash;
  size_t at = 0;
  for (size_t piece = 1; at < data.size(); piece = piece * 3 + 1) {
    const size_t n = std::min(piece, data.size() - at);
    hash.update(data.data() + at, n);
    at += n;
  }
  CHECK(hash.hex_digest() == expected);
  CHECK(qj::sha256_hex(data.data(), data.size()) == expected);
  CHECK(qj::sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("aes-256-gcm opens the GCM specification's test case 16") {
  const auto key = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
  const auto plain = hex(
      "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
      "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
  const auto aad_bytes = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  const std::string aad(aad_bytes.begin(), aad_bytes.end());
  auto cipher = hex(
      "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
      "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662");
  qj::SealInfo info;
  const auto iv = hex("cafebabefacedbaddecaf888"), tag = hex("76fc6ece0f4e1768cddf8853bb2d551b");
  std::copy(iv.begin(), iv.end(), info.iv.begin());
  std::copy(tag.begin(), tag.end(), info.tag.begin());

  std::vector<uint8_t> out(cipher.size());
  qj::open_chunk(Encryption::Aes256Gcm, key, aad, info, cipher.data(), cipher.size(), out.data(), "vector");
  CHECK(out == plain);
  cipher[5] ^= 1;
  CHECK_THROWS_WITH(qj::open_chunk(Encryption::Aes256Gcm, key, aad, info, cipher.data(), cipher.size(),
                                   out.data(), "vector"),
                    Contains("failed authentication"));
}

TEST_CASE("a sealed chunk opens to the plaintext, in place and out of place, at any length") {
  for (size_t n : {size_t(0), size_t(1), size_t(17), size_t(1 << 20) + 3, (size_t(64) << 20) + 5}) {
    const auto plain = random_bytes(n, uint32_t(n));
    std::vector<uint8_t> cipher(n), back(n);
    const auto info = qj::seal_chunk(Encryption::Aes256Gcm, kKey, "t", plain.data(), n, cipher.data());
    qj::open_chunk(Encryption::Aes256Gcm, kKey, "t", info, cipher.data(), n, back.data(), "chunk");
    CHECK(back == plain);
    if (n >= 17) CHECK(cipher != plain);

    std::vector<uint8_t> buffer = plain;
    const auto info2 = qj::seal_chunk(Encryption::Aes256Gcm, kKey, "t", buffer.data(), n, buffer.data());
    if (n >= 17) CHECK(buffer != plain);
    qj::open_chunk(Encryption::Aes256Gcm, kKey, "t", info2, buffer.data(), n, buffer.data(), "chunk");
    CHECK(buffer == plain);
  }
}

TEST_CASE("a modified, truncated or moved chunk, a bad tag or a wrong key fails authentication") {
  const auto plain = random_bytes(4096, 3);
  std::vector<uint8_t> cipher(plain.size()), out(plain.size());
  const std::string aad = "ckpt file=a tensor=w offset=0";
  const auto info = qj::seal_chunk(Encryption::Aes256Gcm, kKey, aad, plain.data(), plain.size(), cipher.data());
  const std::string what = "checkpoint D, file F, tensor T, chunk at byte 0";
  auto open = [&](const std::vector<uint8_t>& key, const std::string& a, const qj::SealInfo& i,
                  const std::vector<uint8_t>& c, size_t bytes) {
    const std::string msg =
        error_of([&] { qj::open_chunk(Encryption::Aes256Gcm, key, a, i, c.data(), bytes, out.data(), what); });
    CHECK_THAT(msg, Contains(what) && Contains("failed authentication") && Contains("wrong key"));
    CHECK(std::all_of(out.begin(), out.begin() + bytes, [](uint8_t b) { return b == 0; }));
  };
  auto flipped = cipher;
  flipped[1000] ^= 0x10;
  open(kKey, aad, info, flipped, flipped.size());
  auto bad_tag = info;
  bad_tag.tag[15] ^= 0x80;
  open(kKey, aad, bad_tag, cipher, cipher.size());
  auto bad_iv = info;
  bad_iv.iv[0] ^= 1;
  open(kKey, aad, bad_iv, cipher, cipher.size());
  auto other_key = kKey;
  other_key[0] ^= 1;
  open(other_key, aad, info, cipher, cipher.size());
  open(kKey, "ckpt file=a tensor=w offset=4096", info, cipher, cipher.size());
  open(kKey, aad, info, cipher, cipher.size() - 1);
}

TEST_CASE("two seals of the same data differ in IV and ciphertext") {
  const auto plain = random_bytes(256, 4);
  std::vector<uint8_t> a(256), b(256);
  const auto ia = qj::seal_chunk(Encryption::Aes256Gcm, kKey, "x", plain.data(), 256, a.data());
  const auto ib = qj::seal_chunk(Encryption::Aes256Gcm, kKey, "x", plain.data(), 256, b.data());
  CHECK(ia.iv != ib.iv);
  CHECK(ia.tag != ib.tag);
  CHECK(a != b);
}

TEST_CASE("the key check tells the right key from a wrong one before any chunk is read") {
  const auto check = qj::make_key_check(Encryption::Aes256Gcm, kKey, "run-42/step-100");
  CHECK(qj::key_matches(Encryption::Aes256Gcm, kKey, "run-42/step-100", check));
  auto wrong = kKey;
  wrong[31] ^= 4;
  CHECK_FALSE(qj::key_matches(Encryption::Aes256Gcm, wrong, "run-42/step-100", check));
  CHECK_FALSE(qj::key_matches(Encryption::Aes256Gcm, kKey, "run-42/step-200", check));
}

TEST_CASE("a key of the wrong size, or sealing with none, is refused") {
  std::vector<uint8_t> buf(8);
  const std::vector<uint8_t> short_key(16, 1);
  CHECK_THROWS_WITH(qj::seal_chunk(Encryption::Aes256Gcm, short_key, "", buf.data(), 8, buf.data()),
                    Contains("32-byte key"));
  CHECK_THROWS_WITH(qj::seal_chunk(Encryption::None, {}, "", buf.data(), 8, buf.data()), Contains("none"));
}

TEST_CASE("sm4-gcm either round-trips or says it needs OpenSSL 3.2") {
  bool available = true;
  std::string msg;
  try {
    qj::require_cipher_available(Encryption::Sm4Gcm);
  } catch (const qj::Error& e) {
    available = false;
    msg = e.what();
  }
  const std::vector<uint8_t> key(kKey.begin(), kKey.begin() + 16);
  const auto plain = random_bytes(1000, 5);
  std::vector<uint8_t> cipher(1000), back(1000);
  if (available) {
    WARN("this OpenSSL has SM4-GCM");
    const auto info = qj::seal_chunk(Encryption::Sm4Gcm, key, "a", plain.data(), 1000, cipher.data());
    qj::open_chunk(Encryption::Sm4Gcm, key, "a", info, cipher.data(), 1000, back.data(), "chunk");
    CHECK(back == plain);
    CHECK(cipher != plain);
    CHECK_THROWS(qj::open_chunk(Encryption::Sm4Gcm, key, "b", info, cipher.data(), 1000, back.data(), "c"));
  } else {
    WARN("this OpenSSL has no SM4-GCM: " << msg);
    CHECK_THAT(msg, Contains("3.2") && Contains("aes-256-gcm") && Contains(OpenSSL_version(OPENSSL_VERSION)));
    CHECK_THROWS_WITH(qj::seal_chunk(Encryption::Sm4Gcm, key, "a", plain.data(), 1000, cipher.data()),
                      Contains("3.2"));
  }
  qj::require_cipher_available(Encryption::Aes256Gcm);
  qj::require_cipher_available(Encryption::None);
}

TEST_CASE("the key loads from key_file before QJ_CHECKPOINT_KEY, as hex in either case") {
  TempDir dir("key");
  const std::string other_hex = std::string(64, 'a');
  KeyEnv env(other_hex.c_str());
  std::string upper = kKeyHex;
  for (char& c : upper) c = char(std::toupper(c));
  write_text(dir.file("key"), "  \n" + upper + "\r\n");
  CHECK(qj::load_checkpoint_key(Encryption::Aes256Gcm, dir.file("key")) == kKey);
  CHECK(qj::load_checkpoint_key(Encryption::Aes256Gcm, "") == std::vector<uint8_t>(32, 0xaa));
  CHECK(qj::load_checkpoint_key(Encryption::None, "").empty());
  KeyEnv sm4_env((" " + kKeyHex.substr(0, 32) + "\n").c_str());
  CHECK(qj::load_checkpoint_key(Encryption::Sm4Gcm, "") ==
        std::vector<uint8_t>(kKey.begin(), kKey.begin() + 16));
}

TEST_CASE("key errors name the source and never the key") {
  TempDir dir("keyerr");
  {
    KeyEnv env(nullptr);
    CHECK(error_of([] { qj::load_checkpoint_key(Encryption::Aes256Gcm, ""); }) ==
          "checkpoint.encryption=aes-256-gcm needs a key: set checkpoint.key_file or QJ_CHECKPOINT_KEY (hex)");
    CHECK_THAT(error_of([&] { qj::load_checkpoint_key(Encryption::Aes256Gcm, dir.file("missing")); }),
               Contains(dir.file("missing")) && Contains("checkpoint.key_file"));
  }
  auto check_secret_kept = [](const std::string& msg, const std::string& secret) {
    CHECK_THAT(msg, !Contains(secret.substr(0, 12)) && !Contains(secret.substr(secret.size() - 12)));
  };
  const std::string bad_char = kKeyHex.substr(0, 40) + "g" + kKeyHex.substr(41);
  write_text(dir.file("bad"), bad_char);
  const std::string msg1 = error_of([&] { qj::load_checkpoint_key(Encryption::Aes256Gcm, dir.file("bad")); });
  CHECK_THAT(msg1, Contains(dir.file("bad")) && Contains("character 41") && Contains("not a hex digit"));
  check_secret_kept(msg1, bad_char);

  const std::string short_hex = kKeyHex.substr(0, 62);
  {
    KeyEnv env(short_hex.c_str());
    const std::string msg2 = error_of([] { qj::load_checkpoint_key(Encryption::Aes256Gcm, ""); });
    CHECK_THAT(msg2, Contains("QJ_CHECKPOINT_KEY") && Contains("expected 64 hex digits, found 62"));
    check_secret_kept(msg2, short_hex);
    const std::string msg3 = error_of([] { qj::load_checkpoint_key(Encryption::Sm4Gcm, ""); });
    CHECK_THAT(msg3, Contains("expected 32 hex digits, found 62"));
    check_secret_kept(msg3, short_hex);
  }
}

TEST_CASE("hex round-trips and bad hex names what it was") {
  const auto bytes = random_bytes(33, 6);
  CHECK(qj::from_hex(qj::to_hex(bytes.data(), bytes.size()), "x") == bytes);
  CHECK(qj::to_hex(bytes.data(), 2).size() == 4);
  CHECK_THROWS_WITH(qj::from_hex("abc", "manifest tensor w iv"), Contains("manifest tensor w iv") && Contains("odd"));
  CHECK_THROWS_WITH(qj::from_hex("ab z01", "manifest tag"), Contains("manifest tag") && Contains("character 3"));
}

TEST_CASE("a durable file holds what was written, and is read back exactly") {
  TempDir dir("durable");
  const std::string path = dir.file("data.bin");
  const auto data = random_bytes(100000, 8);
  {
    qj::DurableFile file(path);
    file.write(data.data(), 10);
    file.write(data.data() + 10, data.size() - 10);
    file.write(data.data(), 0);
    CHECK(file.size() == data.size());
    file.sync_and_close();
    CHECK_THROWS_WITH(file.write(data.data(), 1), Contains("closed"));
  }
  qj::ReadOnlyFile in(path);
  CHECK(in.size() == data.size());
  CHECK(in.path() == path);
  std::vector<uint8_t> back(500);
  in.read_at(1234, back.data(), back.size());
  CHECK(std::equal(back.begin(), back.end(), data.begin() + 1234));
  const std::string msg = error_of([&] { in.read_at(data.size() - 10, back.data(), 30); });
  CHECK_THAT(msg, Contains(path) && Contains("truncated") && Contains("offset 99990") && Contains("20 bytes"));
  CHECK_THROWS_WITH(in.read_at(data.size() + 5, back.data(), 1), Contains("truncated"));
  CHECK_THROWS_WITH(qj::DurableFile(dir.file("no/such/dir/f")), Contains(dir.file("no/such/dir/f")));
  CHECK_THROWS_WITH(qj::read_small_file(dir.file("absent")), Contains(dir.file("absent")));
}

TEST_CASE("past RLIMIT_FSIZE a write fails cleanly with an error instead of SIGXFSZ") {
  TempDir dir("fsize");
  const std::string path = dir.file("big.bin");
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const rlimit limit{4096, 4096};
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(10);
    try {
      qj::DurableFile file(path);
      struct sigaction now {};
      sigaction(SIGXFSZ, nullptr, &now);
      if (now.sa_handler != SIG_IGN) _exit(11);
      const std::vector<uint8_t> data(8192, 1);
      file.write(data.data(), data.size());
      _exit(12);
    } catch (const qj::Error& e) {
      const std::string msg = e.what();
      _exit(msg.find("limit") != std::string::npos && msg.find(path) != std::string::npos ? 0 : 13);
    } catch (...) {
      _exit(14);
    }
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  INFO("child status " << status);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("write_file_atomically replaces a file and leaves no .tmp") {
  TempDir dir("atomic");
  const std::string path = dir.file("manifest.json");
  qj::write_file_atomically(path, "old contents, longer than the new");
  qj::write_file_atomically(path, "new");
  CHECK(qj::read_small_file(path) == "new");
  CHECK_FALSE(fs::exists(path + ".tmp"));
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
  qj::rename_durably(path, dir.file("renamed.json"));
  CHECK(qj::read_small_file(dir.file("renamed.json")) == "new");
  CHECK_FALSE(fs::exists(path));
  CHECK_THROWS_WITH(qj::write_file_atomically(dir.file("none/x.json"), "y"), Contains(dir.file("none/x.json")));
}
