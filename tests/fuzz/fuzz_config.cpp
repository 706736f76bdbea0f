// The config file and its "--set section.key=value" overrides (parse_config).
// Input: the config text, then each override after a NUL byte.
// A config that parses prints (config_to_json) to text that parses back to the
// same config, and the numbers derived from it (parameter count, padded vocab)
// are computed without overflow.
#include "core/config.h"
#include "fuzz_input.h"
#include "qianjun/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> parts = qj::fuzz::split_at_nul(qj::fuzz::as_text(data, size));
  const std::string text = parts.front();
  const std::vector<std::string> overrides(parts.begin() + 1, parts.end());
  qj::Config config;
  try {
    config = qj::parse_config(text, overrides, "fuzz.json");
  } catch (const qj::Error&) {
    return 0;
  }
  const std::string printed = qj::config_to_json(config);
  QJ_FUZZ_ASSERT(qj::parse_config(printed, {}, "printed.json") == config);
  (void)config.model.parameter_count();
  (void)config.model.padded_vocab();
  return 0;
}
