// The JSONL input of qj-prep (DocumentReader): one JSON object a line with a
// string "text". Input: the file. It is read once skipping malformed lines
// (each reported) and once stopping at the first; both read the same
// documents up to that point.
#include "data/text_sources.h"
#include "fuzz_input.h"
#include "qianjun/error.h"

namespace {

// The documents read, and whether reading stopped at a malformed line.
std::vector<qj::TextDocument> read_all(const std::string& path, qj::JsonlErrors on_error,
                                       uint64_t* warnings, bool* stopped) {
  qj::DocumentReader reader(qj::list_text_sources({path}), on_error, [&](const std::string& message) {
    QJ_FUZZ_ASSERT(message.find(path) == 0);
    ++*warnings;
  });
  std::vector<qj::TextDocument> documents;
  *stopped = false;
  try {
    for (qj::TextDocument document; reader.next(document);) documents.push_back(document);
  } catch (const qj::Error& e) {
    QJ_FUZZ_ASSERT(std::string(e.what()).find(path) == 0);
    *stopped = true;
  }
  QJ_FUZZ_ASSERT(reader.skipped_lines() == *warnings);
  return documents;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qj::fuzz::scratch().write("fuzz.jsonl", qj::fuzz::as_text(data, size));
  uint64_t skip_warnings = 0, fatal_warnings = 0;
  bool skip_stopped = false, fatal_stopped = false;
  const auto skipped = read_all(path, qj::JsonlErrors::Skip, &skip_warnings, &skip_stopped);
  const auto fatal = read_all(path, qj::JsonlErrors::Fatal, &fatal_warnings, &fatal_stopped);
  QJ_FUZZ_ASSERT(!skip_stopped && fatal_warnings == 0);
  QJ_FUZZ_ASSERT(fatal_stopped == (skip_warnings > 0));
  QJ_FUZZ_ASSERT(fatal.size() <= skipped.size());
  for (size_t i = 0; i < fatal.size(); ++i)
    QJ_FUZZ_ASSERT(fatal[i].text == skipped[i].text && fatal[i].origin == skipped[i].origin);
  return 0;
}
