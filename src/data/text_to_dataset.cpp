#include "data/text_to_dataset.h"

#include <chrono>
#include <filesystem>
#include <limits>

#include "data/indexed_dataset_writer.h"
#include "data/tokenizer_pool.h"
#include "qianjun/error.h"

namespace qj {

namespace {

// A batch is tokenized in parallel, then written; big enough that each thread
// gets many documents, small enough that progress moves and memory stays low.
constexpr uint64_t kBatchBytesPerThread = uint64_t(1) << 20;
constexpr size_t kMaxBatchDocuments = size_t(1) << 16;

// Fills `batch` with the next documents; false if there were none left.
bool read_batch(DocumentReader& reader, int threads, std::vector<TextDocument>& batch) {
  batch.clear();
  uint64_t bytes = 0;
  TextDocument document;
  while (batch.size() < kMaxBatchDocuments && bytes < kBatchBytesPerThread * uint64_t(threads) &&
         reader.next(document)) {
    bytes += document.text.size();
    batch.push_back(std::move(document));
  }
  return !batch.empty();
}

uint64_t total_bytes(const std::vector<TextSource>& sources) {
  uint64_t bytes = 0;
  for (const TextSource& source : sources) bytes += source.bytes;
  return bytes;
}

void create_parent_folder(const std::string& prefix) {
  const std::filesystem::path parent = std::filesystem::path(prefix).parent_path();
  std::error_code error;
  if (!parent.empty()) std::filesystem::create_directories(parent, error);
  if (error) throw Error("cannot create output folder " + parent.string() + ": " + error.message());
}

void write_batch(IndexedDatasetWriter& writer, const std::vector<TextDocument>& batch,
                 const std::vector<std::vector<int32_t>>& ids) {
  for (size_t i = 0; i < batch.size(); ++i) {
    if (ids[i].size() > size_t(std::numeric_limits<int32_t>::max()))
      throw Error(batch[i].origin + ": a document of " + std::to_string(ids[i].size()) +
                  " tokens is longer than an indexed dataset's int32 sequence size can hold; "
                  "split it into several documents");
    writer.add_document(ids[i]);
  }
}

}  // namespace

TextToDatasetSummary text_to_dataset(const TextToDatasetOptions& options,
                                     const TextToDatasetCallbacks& callbacks) {
  QJ_CHECK(!options.inputs.empty(), "no inputs given");
  QJ_CHECK(!options.output_prefix.empty(), "no output prefix given");
  TokenizerPool pool(options.encoder_json, options.vocab_bpe, options.threads);
  std::vector<TextSource> sources = list_text_sources(options.inputs);
  const auto start = std::chrono::steady_clock::now();  // the rate counts reading, tokenizing, writing

  TextToDatasetSummary summary;
  summary.threads = pool.threads();
  summary.dtype = pool.vocab_size() < 65536 ? TokenDtype::UInt16 : TokenDtype::Int32;
  TextToDatasetProgress& progress = summary.totals;
  progress.bytes_total = total_bytes(sources);

  create_parent_folder(options.output_prefix);
  IndexedDatasetWriter writer(options.output_prefix, summary.dtype);
  DocumentReader reader(std::move(sources), options.jsonl_errors, callbacks.warn);
  std::vector<TextDocument> batch;
  std::vector<std::vector<int32_t>> ids;
  while (read_batch(reader, pool.threads(), batch)) {
    pool.encode(batch, options.append_end_of_text, ids);
    write_batch(writer, batch, ids);
    progress.bytes_done = reader.bytes_read();
    progress.documents = writer.num_documents();
    progress.tokens = writer.num_tokens();
    progress.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (callbacks.on_progress) callbacks.on_progress(progress);
  }
  writer.finish();
  progress.bytes_done = reader.bytes_read();
  progress.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  summary.skipped_lines = reader.skipped_lines();
  return summary;
}

}  // namespace qj
