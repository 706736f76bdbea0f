// The Megatron-LM indexed dataset (reader and writer) against a hand-built
// index, every kind of bad file, and the GPT sampler: packing, shuffling,
// dp shares and the held-out validation windows.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <unistd.h>

#include <catch2/catch.hpp>

#include "data/gpt_sampler.h"
#include "data/indexed_dataset.h"
#include "data/indexed_dataset_writer.h"
#include "qianjun/error.h"
#include "unit/allocation_counter.h"

namespace {

namespace fs = std::filesystem;
using Catch::Contains;
using qj::GptSampler;
using qj::IndexedDataset;
using qj::IndexedDatasetWriter;
using qj::TokenDtype;

// A fresh directory per test case, removed afterwards.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / ("qj_test_data_" + std::to_string(::getpid()) + "_" + name)) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string prefix(const std::string& name) const { return (path / name).string(); }
};

// ---- an independent byte-level builder of the MMIDIDX layout (little-endian) ----
template <typename T>
void put(std::string& bytes, T value) {
  bytes.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

struct RawIndex {
  std::string magic = std::string("MMIDIDX\0\0", 9);
  uint64_t version = 1;
  uint8_t dtype_code = 8;
  std::vector<int32_t> sizes;
  std::vector<int64_t> pointers;
  std::vector<int64_t> document_indices;

  std::string bytes() const {
    std::string out = magic;
    put(out, version);
    put(out, dtype_code);
    put<uint64_t>(out, sizes.size());
    put<uint64_t>(out, document_indices.size());
    for (int32_t s : sizes) put(out, s);
    for (int64_t p : pointers) put(out, p);
    for (int64_t d : document_indices) put(out, d);
    return out;
  }
};

// The index Megatron's builder writes for one sequence per document.
RawIndex megatron_index(const std::vector<std::vector<int32_t>>& documents, int item_bytes, uint8_t code) {
  RawIndex index;
  index.dtype_code = code;
  int64_t pointer = 0;
  index.document_indices.push_back(0);
  for (const auto& document : documents) {
    index.sizes.push_back(static_cast<int32_t>(document.size()));
    index.pointers.push_back(pointer);
    pointer += static_cast<int64_t>(document.size()) * item_bytes;
    index.document_indices.push_back(static_cast<int64_t>(index.sizes.size()));
  }
  return index;
}

std::string tokens_as_bytes(const std::vector<int32_t>& tokens, int item_bytes) {
  std::string out;
  for (int32_t t : tokens) item_bytes == 2 ? put(out, static_cast<uint16_t>(t)) : put(out, t);
  return out;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::vector<int32_t>> sample_documents(int32_t max_token) {
  std::vector<std::vector<int32_t>> documents;
  uint32_t state = 12345;
  for (int length : {5, 1, 0, 17, 3, 40, 2}) {
    std::vector<int32_t> document;
    for (int i = 0; i < length; ++i) {
      state = state * 1664525u + 1013904223u;
      document.push_back(static_cast<int32_t>(state % static_cast<uint32_t>(max_token + 1)));
    }
    documents.push_back(document);
  }
  documents[0][0] = max_token;  // the extreme values must survive the round trip
  documents[0][1] = 0;
  return documents;
}

std::vector<int32_t> concatenate(const std::vector<std::vector<int32_t>>& documents) {
  std::vector<int32_t> all;
  for (const auto& d : documents) all.insert(all.end(), d.begin(), d.end());
  return all;
}

void write_with_writer(const std::string& prefix, TokenDtype dtype,
                       const std::vector<std::vector<int32_t>>& documents) {
  IndexedDatasetWriter writer(prefix, dtype);
  for (const auto& d : documents) writer.add_document(d);
  writer.finish();
}

// A dataset whose token at stream position i is i (int32), in uneven documents.
void write_position_dataset(const std::string& prefix, int32_t num_tokens) {
  IndexedDatasetWriter writer(prefix, TokenDtype::Int32);
  int32_t next = 0;
  for (int32_t length = 1; next < num_tokens; length = length % 23 + 4) {
    std::vector<int32_t> document;
    for (int32_t i = 0; i < length && next < num_tokens; ++i) document.push_back(next++);
    writer.add_document(document);
  }
  writer.finish();
}

}  // namespace

TEST_CASE("writer output is byte-identical to Megatron's layout, uint16 and int32") {
  TempDir dir("layout");
  for (auto [dtype, bytes, code] : {std::tuple{TokenDtype::UInt16, 2, uint8_t{8}},
                                    std::tuple{TokenDtype::Int32, 4, uint8_t{4}}}) {
    const auto documents = sample_documents(dtype == TokenDtype::UInt16 ? 65535 : 2000000000);
    const std::string prefix = dir.prefix(qj::dtype_name(dtype));
    write_with_writer(prefix, dtype, documents);
    CHECK(read_file(prefix + ".idx") == megatron_index(documents, bytes, code).bytes());
    CHECK(read_file(prefix + ".bin") == tokens_as_bytes(concatenate(documents), bytes));
    CHECK_FALSE(fs::exists(prefix + ".idx.tmp"));
    CHECK_FALSE(fs::exists(prefix + ".bin.tmp"));
  }
}

TEST_CASE("reader returns every token range of what the writer wrote") {
  TempDir dir("roundtrip");
  for (TokenDtype dtype : {TokenDtype::UInt16, TokenDtype::Int32}) {
    const auto documents = sample_documents(dtype == TokenDtype::UInt16 ? 65535 : 2000000000);
    const std::vector<int32_t> all = concatenate(documents);
    const std::string prefix = dir.prefix(qj::dtype_name(dtype));
    write_with_writer(prefix, dtype, documents);
    const IndexedDataset data(prefix);
    CHECK(data.dtype() == dtype);
    CHECK(data.num_sequences() == documents.size());
    CHECK(data.num_documents() == documents.size());
    CHECK(data.num_tokens() == all.size());
    for (size_t i = 0; i < documents.size(); ++i) CHECK(data.sequence_length(i) == documents[i].size());
    std::vector<int32_t> out(all.size());
    for (size_t offset = 0; offset <= all.size(); ++offset) {
      for (size_t count = 0; offset + count <= all.size(); ++count) {
        data.read_tokens(offset, count, out.data());
        const auto expected = all.begin() + static_cast<long>(offset);
        REQUIRE(std::equal(out.begin(), out.begin() + static_cast<long>(count), expected));
      }
    }
    CHECK_THROWS_AS(data.read_tokens(all.size() - 2, 3, out.data()), qj::Error);
  }
}

TEST_CASE("reader accepts documents of several sequences from a hand-built index") {
  TempDir dir("multiseq");
  RawIndex index = megatron_index({{1, 2, 3}, {}, {4, 5}, {6}}, 2, 8);
  index.document_indices = {0, 2, 4};  // two documents of two sequences each
  write_file(dir.prefix("d") + ".idx", index.bytes());
  write_file(dir.prefix("d") + ".bin", tokens_as_bytes({1, 2, 3, 4, 5, 6}, 2));
  const IndexedDataset data(dir.prefix("d"));
  CHECK(data.num_sequences() == 4);
  CHECK(data.num_documents() == 2);
  std::vector<int32_t> out(6);
  data.read_tokens(0, 6, out.data());
  CHECK(out == std::vector<int32_t>{1, 2, 3, 4, 5, 6});
}

TEST_CASE("every defective dataset throws qj::Error naming the file and the defect") {
  TempDir dir("bad");
  const std::string prefix = dir.prefix("d");
  const std::string idx = prefix + ".idx", bin = prefix + ".bin";
  const std::vector<std::vector<int32_t>> documents = {{1, 2, 3}, {4, 5}, {6, 7, 8, 9}};
  const RawIndex good = megatron_index(documents, 2, 8);
  const std::string good_bin = tokens_as_bytes(concatenate(documents), 2);
  auto expect_error = [&](const std::string& idx_bytes, const std::string& bin_bytes, const std::string& file,
                          const std::string& defect) {
    fs::remove(idx);
    fs::remove(bin);
    if (!idx_bytes.empty()) write_file(idx, idx_bytes);
    if (bin_bytes != "<none>") write_file(bin, bin_bytes);
    CHECK_THROWS_WITH(IndexedDataset(prefix), Contains(file) && Contains(defect));
  };
  SECTION("the hand-built index itself is valid") {
    write_file(idx, good.bytes());
    write_file(bin, good_bin);
    CHECK(IndexedDataset(prefix).num_tokens() == 9);
  }
  SECTION("missing .idx") { expect_error("", good_bin, idx, "cannot open"); }
  SECTION("missing .bin") { expect_error(good.bytes(), "<none>", bin, "cannot open"); }
  SECTION("bad magic") {
    RawIndex bad = good;
    bad.magic = std::string("MMIDIDY\0\0", 9);
    expect_error(bad.bytes(), good_bin, idx, "bad magic");
  }
  SECTION("wrong version") {
    RawIndex bad = good;
    bad.version = 2;
    expect_error(bad.bytes(), good_bin, idx, "version 2");
  }
  SECTION("unsupported dtype (float32)") {
    RawIndex bad = good;
    bad.dtype_code = 7;
    expect_error(bad.bytes(), good_bin, idx, "float32");
  }
  SECTION("truncated header") { expect_error(good.bytes().substr(0, 20), good_bin, idx, "truncated"); }
  SECTION("truncated arrays") {
    const std::string bytes = good.bytes();
    expect_error(bytes.substr(0, bytes.size() - 5), good_bin, idx, "truncated");
  }
  SECTION("trailing bytes after the index") { expect_error(good.bytes() + "xx", good_bin, idx, "unexpected bytes"); }
  SECTION(".bin shorter than the index says") {
    expect_error(good.bytes(), good_bin.substr(0, good_bin.size() - 2), bin, "truncated");
  }
  SECTION(".bin longer than the index says") { expect_error(good.bytes(), good_bin + "zz", bin, "do not belong"); }
  SECTION("pointers that go backwards") {
    RawIndex bad = good;
    bad.pointers[2] = 2;
    expect_error(bad.bytes(), good_bin, idx, "sequence 2");
  }
  SECTION("negative size") {
    RawIndex bad = good;
    bad.sizes[1] = -1;
    expect_error(bad.bytes(), good_bin, idx, "negative size");
  }
  SECTION("document index not ending at the sequence count") {
    RawIndex bad = good;
    bad.document_indices = {0, 1, 2};
    expect_error(bad.bytes(), good_bin, idx, "last document index");
  }
}

TEST_CASE("writer rejects tokens outside uint16 and leaves no files when not finished") {
  TempDir dir("writer");
  const std::string prefix = dir.prefix("d");
  {
    IndexedDatasetWriter writer(prefix, TokenDtype::UInt16);
    writer.add_document(std::vector<int32_t>{1, 2});
    CHECK_THROWS_WITH(writer.add_document(std::vector<int32_t>{65536}), Contains("uint16"));
    CHECK_THROWS_WITH(writer.add_document(std::vector<int32_t>{-1}), Contains("uint16"));
  }
  CHECK(fs::is_empty(dir.path));
}

TEST_CASE("windows pack across documents and targets are the inputs shifted by one") {
  TempDir dir("packing");
  const int seq_len = 7;
  const int32_t num_tokens = 200;  // token value == stream position
  write_position_dataset(dir.prefix("d"), num_tokens);
  const IndexedDataset data(dir.prefix("d"));
  REQUIRE(data.num_documents() > 10);
  const GptSampler sampler(data, seq_len, /*shuffle=*/false, 0);
  REQUIRE(sampler.num_samples() == (num_tokens - 1) / seq_len);  // 28 windows: the last ends at token 196

  const int count = static_cast<int>(sampler.num_samples()) + 2;  // runs into the second epoch
  std::vector<int32_t> inputs(count * seq_len), targets(count * seq_len);
  sampler.fill_batch(0, count, inputs.data(), targets.data());
  for (int i = 0; i < count; ++i) {
    const int window = i % static_cast<int>(sampler.num_samples());
    for (int j = 0; j < seq_len; ++j) {
      REQUIRE(inputs[i * seq_len + j] == window * seq_len + j);
      REQUIRE(targets[i * seq_len + j] == window * seq_len + j + 1);
    }
  }
  CHECK_THROWS_WITH(GptSampler(data, 200, false, 0), Contains(dir.prefix("d")));
  CHECK(GptSampler(data, 199, false, 0).num_samples() == 1);  // 200 tokens: one window of 200
}

TEST_CASE("shuffled epochs are permutations fixed by the seed and the epoch") {
  TempDir dir("shuffle");
  write_position_dataset(dir.prefix("d"), 1000);
  const IndexedDataset data(dir.prefix("d"));
  const int seq_len = 4;
  const GptSampler a(data, seq_len, true, 42), b(data, seq_len, true, 42), c(data, seq_len, true, 43);
  const size_t windows = a.num_samples();
  REQUIRE(windows == 249);
  std::vector<std::vector<size_t>> epochs_a(3), epochs_b(3), epochs_c(3);
  for (size_t s = 0; s < 3 * windows; ++s) {
    epochs_a[s / windows].push_back(a.window_of(s));
    epochs_c[s / windows].push_back(c.window_of(s));
  }
  for (size_t s = 3 * windows; s-- > 0;) epochs_b[s / windows].push_back(b.window_of(s));  // backwards
  for (auto& epoch : epochs_b) std::reverse(epoch.begin(), epoch.end());
  std::vector<size_t> identity(windows);
  std::iota(identity.begin(), identity.end(), 0);
  for (int e = 0; e < 3; ++e) {
    CHECK(epochs_a[e] == epochs_b[e]);
    CHECK(epochs_a[e] != epochs_c[e]);
    CHECK(epochs_a[e] != identity);
    std::vector<size_t> sorted = epochs_a[e];
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == identity);  // each window exactly once per epoch
  }
  CHECK(epochs_a[0] != epochs_a[1]);
  CHECK(epochs_a[1] != epochs_a[2]);

  // fill_batch reads the window window_of names.
  std::vector<int32_t> inputs(3 * seq_len), targets(3 * seq_len);
  a.fill_batch(windows - 1, 3, inputs.data(), targets.data());  // straddles epochs 0 and 1
  for (int i = 0; i < 3; ++i) {
    const auto start = static_cast<int32_t>(a.window_of(windows - 1 + i) * seq_len);
    CHECK(inputs[i * seq_len] == start);
    CHECK(targets[i * seq_len + seq_len - 1] == start + seq_len);
  }
}

TEST_CASE("fill_batch allocates nothing, even when it crosses into a new epoch") {
  TempDir dir("noalloc");
  write_position_dataset(dir.prefix("d"), 5000);
  const IndexedDataset data(dir.prefix("d"));
  const GptSampler sampler(data, 16, true, 7);
  std::vector<int32_t> inputs(8 * 16), targets(8 * 16);
  const qj::test::AllocationCounter counter;
  for (size_t first = 0; first < 3 * sampler.num_samples(); first += 8)
    sampler.fill_batch(first, 8, inputs.data(), targets.data());
  const long allocations = counter.count();  // read before Catch allocates
  CHECK(allocations == 0);
}

TEST_CASE("dp ranks and micro-batches partition each global batch in order") {
  const int global_batch = 24;
  for (int dp_size : {1, 2, 3, 4}) {
    const int share = global_batch / dp_size;
    for (int micro_batch : {1, 2, share}) {
      if (share % micro_batch != 0) continue;
      for (int step : {0, 1, 5}) {
        std::vector<size_t> samples;  // in rank order, then micro-batch order
        for (int rank = 0; rank < dp_size; ++rank)
          for (int micro = 0; micro < share / micro_batch; ++micro) {
            const size_t first = GptSampler::first_sample_of(step, global_batch, rank, dp_size, micro, micro_batch);
            for (int i = 0; i < micro_batch; ++i) samples.push_back(first + i);
          }
        std::vector<size_t> expected(global_batch);
        std::iota(expected.begin(), expected.end(), static_cast<size_t>(step) * global_batch);
        REQUIRE(samples == expected);
      }
    }
  }
  CHECK_THROWS_WITH(GptSampler::first_sample_of(0, 10, 0, 4, 0, 1), Contains("global_batch"));
  CHECK_THROWS_AS(GptSampler::first_sample_of(0, 8, 0, 2, 2, 2), qj::Error);  // past the share of 4
  CHECK_THROWS_AS(GptSampler::first_sample_of(0, 8, 2, 2, 0, 2), qj::Error);  // rank outside dp
}

TEST_CASE("hold_out_windows keeps the last fraction of windows for validation") {
  const qj::WindowSplit split = qj::hold_out_windows(100, 0.1);
  CHECK(split.train.first == 0);
  CHECK(split.train.count == 90);
  CHECK(split.valid.first == 90);
  CHECK(split.valid.count == 10);
  CHECK(qj::hold_out_windows(100, 0.001).valid.count == 1);
  CHECK_THROWS_WITH(qj::hold_out_windows(1, 0.5), Contains("valid_fraction"));
  CHECK_THROWS_AS(qj::hold_out_windows(100, 1.0), qj::Error);

  TempDir dir("holdout");
  write_position_dataset(dir.prefix("d"), 401);  // 100 windows of 4
  const IndexedDataset data(dir.prefix("d"));
  const qj::WindowSplit halves = qj::hold_out_windows(qj::count_windows(data.num_tokens(), 4), 0.25);
  const GptSampler train(data, 4, true, 3, halves.train), valid(data, 4, false, 0, halves.valid);
  CHECK(valid.num_samples() == 25);
  std::set<size_t> seen;
  for (size_t s = 0; s < train.num_samples(); ++s) seen.insert(train.window_of(s));
  CHECK(seen.size() == 75);
  CHECK(*seen.rbegin() == 74);
  std::vector<int32_t> inputs(4), targets(4);
  valid.fill_batch(0, 1, inputs.data(), targets.data());
  CHECK(inputs == std::vector<int32_t>{300, 301, 302, 303});
  CHECK_THROWS_AS(GptSampler(data, 4, false, 0, qj::WindowRange{90, 11}), qj::Error);
}
