// A checkpoint's manifest.json (parse_manifest, then the reader's checks of its
// chunk records). Input: the manifest text. It is parsed as given, and (when it
// is a JSON object) once more with its manifest_sha256 recomputed, so that
// the fuzzer gets past the hash to the fields. A manifest that parses prints
// (manifest_to_json) to text that parses back to the same manifest.
#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint_reader.h"
#include "checkpoint/chunk_cipher.h"
#include "checkpoint/manifest.h"
#include "fuzz_input.h"
#include "qianjun/error.h"

namespace {

void check_manifest(const std::string& text) {
  qj::Manifest manifest;
  try {
    manifest = qj::parse_manifest(text, "manifest.json");
  } catch (const qj::Error&) {
    return;
  }
  const std::string printed = qj::manifest_to_json(manifest);
  QJ_FUZZ_ASSERT(qj::manifest_to_json(qj::parse_manifest(printed, "printed.json")) == printed);
  try {
    qj::check_chunk_records(manifest, "manifest.json");
  } catch (const qj::Error&) {
  }
}

// The text with "manifest_sha256" set as manifest_to_json sets it; "" if the
// text is not a JSON object.
std::string rehashed(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return "";
  j.erase("manifest_sha256");
  const std::string body = j.dump();
  j["manifest_sha256"] = qj::sha256_hex(body.data(), body.size());
  return j.dump();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(qj::fuzz::as_text(data, size));
  check_manifest(text);
  const std::string with_hash = rehashed(text);
  if (!with_hash.empty()) check_manifest(with_hash);
  return 0;
}
