// The checkpoint manifest (round trip, damage, versions) and the tiling check a
// save makes before writing anything.
#include <cstdint>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint_reader.h"
#include "checkpoint/chunk_cipher.h"
#include "checkpoint/chunk_tiling.h"
#include "checkpoint/manifest.h"
#include "qianjun/error.h"

using namespace qj;
using nlohmann::json;

namespace {

Manifest sample() {
  Manifest m;
  m.id = "00112233aabbccdd", m.step = 1200, m.consumed_samples = 38400, m.optimizer_steps = 1200;
  m.seed = 7, m.shuffle = false;
  m.model_json = R"({"hidden":64,"layers":2,"norm_eps":1e-05,"rope_theta":10000.0})";
  m.mesh = {2, 2, 2, 1, 1, true, "1f1b", "bf16"};
  m.files = {{"rank_00000.bin", 1024}};
  m.tensors["wte.weight"].shape = {97, 64};
  m.tensors["wte.weight"].chunks.push_back(
      {"rank_00000.bin", 0, 512, {0, 0}, {2, 64}, std::string(64, 'a'), std::nullopt});
  return m;
}

// The manifest's rule, applied to an edited manifest: the hash of the rest, as dumped.
std::string rehashed(json j) {
  j.erase("manifest_sha256");
  const std::string body = j.dump();
  j["manifest_sha256"] = sha256_hex(body.data(), body.size());
  return j.dump(1);
}

}  // namespace

TEST_CASE("a manifest reads back as written") {
  const Manifest m = sample();
  const Manifest back = parse_manifest(manifest_to_json(m), "manifest.json");
  CHECK(back.id == m.id);
  CHECK(back.step == 1200);
  CHECK(back.consumed_samples == 38400);
  CHECK(back.optimizer_steps == 1200);
  CHECK((back.seed == 7 && !back.shuffle));
  CHECK(json::parse(back.model_json) == json::parse(m.model_json));
  CHECK((back.mesh.tp == 2 && back.mesh.zero == 1 && back.mesh.sequence_parallel && back.mesh.precision == "bf16"));
  CHECK(back.files == m.files);
  const ChunkRecord& c = back.tensors.at("wte.weight").chunks.at(0);
  CHECK((c.file == "rank_00000.bin" && c.length == 512 && c.shape == std::vector<int64_t>{2, 64}));
  CHECK(back.tensors.at("wte.weight").shape == std::vector<int64_t>{97, 64});
}

TEST_CASE("a damaged manifest is refused: any edit, truncation, or no hash at all") {
  const std::string text = manifest_to_json(sample());
  std::string edited = text;
  edited.replace(edited.find("38400"), 5, "38401");
  CHECK_THROWS_WITH(parse_manifest(edited, "m.json"), Catch::Contains("m.json") && Catch::Contains("damaged"));
  CHECK_THROWS_WITH(parse_manifest(text.substr(0, text.size() / 2), "m.json"), Catch::Contains("damaged"));
  json j = json::parse(text);
  j.erase("manifest_sha256");
  CHECK_THROWS_WITH(parse_manifest(j.dump(), "m.json"), Catch::Contains("manifest_sha256"));
}

TEST_CASE("a newer major version is refused naming both; a newer minor is read") {
  json j = json::parse(manifest_to_json(sample()));
  j["format_version"] = "2.0";
  CHECK_THROWS_WITH(parse_manifest(rehashed(j), "m.json"),
                    Catch::Contains("2.0") && Catch::Contains("1.0") && Catch::Contains("newer"));
  j["format_version"] = "1.7";
  j["a_key_from_the_future"] = 1;
  CHECK(parse_manifest(rehashed(j), "m.json").format_minor == 7);
}

TEST_CASE("chunks must tile every tensor exactly once, or the save names what is wrong") {
  const std::map<std::string, std::vector<int64_t>> shapes = {{"w", {4, 6}}, {"b", {6}}};
  const std::vector<ChunkBox> tiled = {{"w", {0, 0}, {4, 3}, "rank 0"}, {"w", {0, 3}, {2, 3}, "rank 1"},
                                       {"w", {2, 3}, {2, 3}, "rank 2"}, {"b", {0}, {6}, "rank 3"}};
  CHECK_NOTHROW(check_tiling(shapes, tiled));

  std::vector<ChunkBox> overlap = tiled;
  overlap[2].offset = {1, 3};
  CHECK_THROWS_WITH(check_tiling(shapes, overlap),
                    Catch::Contains("'w'") && Catch::Contains("overlaps") && Catch::Contains("rank 2"));
  std::vector<ChunkBox> gap = tiled;
  gap.pop_back();
  CHECK_THROWS_WITH(check_tiling(shapes, gap), Catch::Contains("'b'") && Catch::Contains("gap"));
  std::vector<ChunkBox> outside = tiled;
  outside[3].shape = {7};
  CHECK_THROWS_WITH(check_tiling(shapes, outside), Catch::Contains("outside") && Catch::Contains("rank 3"));
  std::vector<ChunkBox> stranger = tiled;
  stranger.push_back({"v", {0}, {1}, "rank 5"});
  CHECK_THROWS_WITH(check_tiling(shapes, stranger), Catch::Contains("'v'") && Catch::Contains("not part"));
}

TEST_CASE("a reader refuses chunk records that cannot be right, even under a valid hash") {
  CHECK_NOTHROW(check_chunk_records([] {
    Manifest m = sample();
    m.tensors["wte.weight"].shape = {2, 64};
    return m;
  }(), "m.json"));
  Manifest gap = sample();  // 2 of 97 rows
  CHECK_THROWS_WITH(check_chunk_records(gap, "m.json"), Catch::Contains("wte.weight") && Catch::Contains("gap"));
  Manifest overlap = sample();
  overlap.tensors["wte.weight"].shape = {2, 64};
  overlap.tensors["wte.weight"].chunks.push_back(overlap.tensors["wte.weight"].chunks[0]);
  CHECK_THROWS_WITH(check_chunk_records(overlap, "m.json"), Catch::Contains("overlaps"));
  Manifest stray = sample();
  stray.tensors["wte.weight"].shape = {2, 64};
  stray.tensors["wte.weight"].chunks[0].file = "elsewhere.bin";
  CHECK_THROWS_WITH(check_chunk_records(stray, "m.json"), Catch::Contains("does not list"));
  Manifest past_end = sample();
  past_end.tensors["wte.weight"].shape = {2, 64};
  past_end.tensors["wte.weight"].chunks[0].offset = 1000;  // 512 bytes from 1000 in a 1024-byte file
  CHECK_THROWS_WITH(check_chunk_records(past_end, "m.json"), Catch::Contains("recorded size"));
  Manifest wrong_length = sample();
  wrong_length.tensors["wte.weight"].shape = {2, 64};
  wrong_length.tensors["wte.weight"].chunks[0].length = 500;
  CHECK_THROWS_WITH(check_chunk_records(wrong_length, "m.json"), Catch::Contains("does not fit"));
}

// Reproduced with tests/fuzz/fuzz_manifest: signed overflow in the tiling check, a read
// before the start of an empty offset, and a byte count that wrapped to 0.
TEST_CASE("chunk records whose sizes overflow, or that split a scalar, are refused") {
  const int64_t huge = INT64_MAX;
  CHECK_THROWS_WITH(check_tiling({{"w", {huge, 4}}}, {{"w", {0, 0}, {1, 1}, "rank 0"}}),
                    Catch::Contains("'w'") && Catch::Contains("fit in 64 bits"));
  CHECK_THROWS_WITH(check_tiling({{"b", {4}}}, {{"b", {huge}, {4}, "rank 0"}}),
                    Catch::Contains("outside") && Catch::Contains("rank 0"));
  CHECK_THROWS_WITH(check_tiling({{"s", {}}}, {{"s", {}, {}, "rank 0"}, {"s", {}, {}, "rank 1"}}),
                    Catch::Contains("'s'") && Catch::Contains("overlaps"));
  CHECK_NOTHROW(check_tiling({{"s", {}}}, {{"s", {}, {}, "rank 0"}}));

  Manifest wraps = sample();  // 2^62 fp32 values: 2^64 bytes, once recorded as 0
  wraps.files = {{"rank_00000.bin", 0}};
  wraps.tensors["wte.weight"].shape = {int64_t(1) << 62};
  wraps.tensors["wte.weight"].chunks[0] = {"rank_00000.bin", 0, 0, {0}, {int64_t(1) << 62}, "", std::nullopt};
  CHECK_THROWS_WITH(check_chunk_records(wraps, "m.json"), Catch::Contains("does not fit"));
}
