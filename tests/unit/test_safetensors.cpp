// The safetensors reader and writer: round trips are bit-identical, files
// assembled byte by byte (independently of our writer) read back as the spec
// says, half-precision conversion matches hand-computed values, and every
// malformed file is refused with an error naming the file.
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "checkpoint/safetensors.h"
#include "qianjun/error.h"

using Catch::Matchers::Contains;
using qj::SafetensorsFile;
using qj::SafetensorsWriter;
using qj::StDType;

namespace {

std::string temp_path(const std::string& name) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("qj_test_safetensors_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((v >> (8 * i)) & 0xff);
  return s;
}

std::string le16s(std::initializer_list<uint16_t> values) {
  std::string s;
  for (uint16_t v : values) {
    s += char(v & 0xff);
    s += char(v >> 8);
  }
  return s;
}

std::string le32f(std::initializer_list<float> values) {
  std::string s;
  for (float f : values) {
    const uint32_t v = std::bit_cast<uint32_t>(f);
    for (int i = 0; i < 4; ++i) s += char((v >> (8 * i)) & 0xff);
  }
  return s;
}

// A file made by hand: 8-byte length, the header text as given, the data bytes.
std::string hand_file(const std::string& name, const std::string& header, const std::string& data) {
  const std::string path = temp_path(name);
  write_bytes(path, le64(header.size()) + header + data);
  return path;
}

// "{" + inner + "}", built by appending (GCC 12 warns falsely on "{" + std::string).
std::string braces(const std::string& inner) {
  std::string s = "{";
  s += inner;
  s += "}";
  return s;
}

// One tensor entry as header JSON text.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  uint64_t begin, uint64_t end) {
  return "\"" + name + "\": {\"dtype\": \"" + dtype + "\", \"shape\": " + shape +
         ", \"data_offsets\": [" + std::to_string(begin) + ", " + std::to_string(end) + "]}";
}

void require_open_fails(const std::string& path, const std::string& detail) {
  REQUIRE_THROWS_AS(SafetensorsFile::open(path), qj::Error);
  REQUIRE_THROWS_WITH(SafetensorsFile::open(path), Contains(path) && Contains(detail));
}

}  // namespace

TEST_CASE("writer then reader round-trips bytes exactly, header sorted and 8-byte aligned") {
  std::mt19937 rng(42);
  std::vector<float> a(3 * 5), b(7);
  for (float& x : a) x = std::uniform_real_distribution<float>(-3, 3)(rng);
  for (float& x : b) x = std::uniform_real_distribution<float>(-3, 3)(rng);
  a[0] = -0.0f;
  a[1] = std::numeric_limits<float>::quiet_NaN();
  a[2] = std::numeric_limits<float>::denorm_min();
  const std::vector<uint16_t> half = {0x3f80, 0xc049, 0x0001};

  SafetensorsWriter writer;
  writer.add("zeta.weight", StDType::F32, {3, 5}, a.data());
  writer.add_f32("alpha", {7}, std::vector<float>(b));
  writer.add("mid.bf16", StDType::BF16, {3}, half.data());
  writer.add("empty", StDType::F32, {0, 4}, nullptr);
  const std::string path = temp_path("roundtrip.safetensors");
  writer.write(path, {{"format", "pt"}, {"note", "x"}});
  REQUIRE_FALSE(std::filesystem::exists(path + ".tmp"));

  // Independent look at the bytes: header length, padding, sorted data order.
  const std::string bytes = read_bytes(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  REQUIRE(n % 8 == 0);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  REQUIRE(header["alpha"]["data_offsets"] == nlohmann::json({0, 28}));
  REQUIRE(header["empty"]["data_offsets"] == nlohmann::json({28, 28}));
  REQUIRE(header["mid.bf16"]["data_offsets"] == nlohmann::json({28, 34}));
  REQUIRE(header["zeta.weight"]["data_offsets"] == nlohmann::json({34, 94}));
  REQUIRE(header["__metadata__"]["format"] == "pt");
  REQUIRE(bytes.size() == 8 + n + 94);

  const SafetensorsFile file = SafetensorsFile::open(path);
  REQUIRE(file.names() == std::vector<std::string>{"alpha", "empty", "mid.bf16", "zeta.weight"});
  REQUIRE(file.metadata().at("note") == "x");
  REQUIRE(file.info("zeta.weight").shape == std::vector<int64_t>{3, 5});
  REQUIRE(file.info("mid.bf16").dtype == StDType::BF16);
  std::vector<float> got_a(a.size()), got_b(b.size());
  file.read_f32("zeta.weight", got_a.data(), got_a.size());
  file.read_f32("alpha", got_b.data(), got_b.size());
  REQUIRE(std::memcmp(got_a.data(), a.data(), a.size() * 4) == 0);  // NaN and -0 too
  REQUIRE(std::memcmp(got_b.data(), b.data(), b.size() * 4) == 0);
  REQUIRE(std::memcmp(file.raw("mid.bf16"), half.data(), 6) == 0);
  std::vector<float> h(3);
  file.read_f32("mid.bf16", h.data(), 3);
  REQUIRE(h[0] == 1.0f);
  REQUIRE(h[1] == -3.140625f);
}

TEST_CASE("a file assembled by hand reads as the spec says") {
  // Data order differs from name order; header padded with trailing spaces.
  const std::string header =
      braces(entry("w", "BF16", "[2, 2]", 12, 20) + ", " + entry("b", "F32", "[3]", 0, 12) +
             ", \"__metadata__\": {\"format\": \"pt\"}") +
      "    ";
  const std::string data = le32f({1.5f, -2.0f, 0.25f}) + le16s({0x3f80, 0x4000, 0xbf00, 0x4049});
  const std::string path = hand_file("hand.safetensors", header, data);

  const SafetensorsFile file = SafetensorsFile::open(path);
  REQUIRE(file.names() == std::vector<std::string>{"b", "w"});
  REQUIRE(file.metadata().at("format") == "pt");
  REQUIRE(file.info("w").shape == std::vector<int64_t>{2, 2});
  std::vector<float> b(3), w(4);
  file.read_f32("b", b.data(), 3);
  file.read_f32("w", w.data(), 4);
  REQUIRE(b == std::vector<float>{1.5f, -2.0f, 0.25f});
  REQUIRE(w == std::vector<float>{1.0f, 2.0f, -0.5f, 3.140625f});
}

TEST_CASE("F16 and BF16 convert to fp32 as hand-computed") {
  // fp16: sign | 5-bit exponent (bias 15) | 10-bit mantissa.
  CHECK(qj::f16_to_f32(0x3c00) == 1.0f);
  CHECK(qj::f16_to_f32(0xc000) == -2.0f);
  CHECK(qj::f16_to_f32(0x3555) == 0.333251953125f);             // (1 + 341/1024) / 4
  CHECK(qj::f16_to_f32(0x7bff) == 65504.0f);                    // largest finite
  CHECK(qj::f16_to_f32(0x0400) == 6.103515625e-05f);            // smallest normal, 2^-14
  CHECK(qj::f16_to_f32(0x0001) == 5.9604644775390625e-08f);     // smallest subnormal, 2^-24
  CHECK(qj::f16_to_f32(0x03ff) == 6.0975551605224609375e-05f);  // 1023 * 2^-24
  CHECK(qj::f16_to_f32(0x8001) == -5.9604644775390625e-08f);
  CHECK(std::bit_cast<uint32_t>(qj::f16_to_f32(0x8000)) == 0x80000000u);  // -0
  CHECK(qj::f16_to_f32(0x7c00) == std::numeric_limits<float>::infinity());
  CHECK(qj::f16_to_f32(0xfc00) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(qj::f16_to_f32(0x7e00)));
  // bf16: the upper half of an fp32.
  CHECK(qj::bf16_to_f32(0x3f80) == 1.0f);
  CHECK(qj::bf16_to_f32(0xc049) == -3.140625f);
  CHECK(qj::bf16_to_f32(0x4b80) == 16777216.0f);
  CHECK(qj::bf16_to_f32(0x0001) == std::ldexp(1.0f, -133));  // subnormal
  CHECK(qj::bf16_to_f32(0xff80) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(qj::bf16_to_f32(0x7fc0)));

  // The same through a file: F16 tensor read by read_f32.
  const std::string path = hand_file("f16.safetensors", braces(entry("h", "F16", "[4]", 0, 8)),
                                     le16s({0x3555, 0x0001, 0xc000, 0x7bff}));
  std::vector<float> h(4);
  SafetensorsFile::open(path).read_f32("h", h.data(), 4);
  REQUIRE(h == std::vector<float>{0.333251953125f, 5.9604644775390625e-08f, -2.0f, 65504.0f});
}

TEST_CASE("malformed files are refused with an error naming the file") {
  const std::string ok_data = le32f({1, 2, 3, 4});

  SECTION("missing file") {
    require_open_fails(temp_path("does_not_exist.safetensors"), "cannot open");
  }
  SECTION("shorter than 8 bytes") {
    const std::string path = temp_path("short.safetensors");
    write_bytes(path, "\x05\x00\x00");
    require_open_fails(path, "fewer than the 8-byte header length");
    write_bytes(path, "");
    require_open_fails(path, "fewer than the 8-byte header length");
  }
  SECTION("header length beyond the file") {
    const std::string path = temp_path("long_header.safetensors");
    write_bytes(path, le64(1000) + "{}");
    require_open_fails(path, "runs past the end");
    write_bytes(path, le64(~0ull) + "{}");
    require_open_fails(path, "runs past the end");
  }
  SECTION("invalid JSON") {
    require_open_fails(hand_file("bad_json.safetensors", "{\"a\": {\"dtype\": ", ""),
                       "not valid JSON");
    require_open_fails(hand_file("not_object.safetensors", "[1, 2]", ""),
                       "does not start with '{'");
    require_open_fails(hand_file("trailing.safetensors", "{} x", ""), "not valid JSON");
  }
  SECTION("duplicate tensor names") {
    const std::string h =
        braces(entry("a", "F32", "[2]", 0, 8) + ", " + entry("a", "F32", "[2]", 8, 16));
    require_open_fails(hand_file("dup.safetensors", h, ok_data), "'a' twice");
  }
  SECTION("missing and unknown fields") {
    require_open_fails(hand_file("no_dtype.safetensors",
                                 "{\"t\": {\"shape\": [4], \"data_offsets\": [0, 16]}}", ok_data),
                       "tensor 't': missing field \"dtype\"");
    require_open_fails(hand_file("no_offsets.safetensors",
                                 "{\"t\": {\"dtype\": \"F32\", \"shape\": [4]}}", ok_data),
                       "tensor 't': missing field \"data_offsets\"");
    require_open_fails(
        hand_file("no_shape.safetensors",
                  "{\"t\": {\"dtype\": \"F32\", \"data_offsets\": [0, 16]}}", ok_data),
        "tensor 't': missing field \"shape\"");
    require_open_fails(
        hand_file(
            "extra_field.safetensors",
            "{\"t\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16], \"x\": 1}}",
            ok_data),
        "tensor 't': unknown field 'x'");
    require_open_fails(hand_file("not_entry.safetensors", "{\"t\": 3}", ok_data), "tensor 't'");
  }
  SECTION("unknown dtype") {
    require_open_fails(
        hand_file("dtype.safetensors", braces(entry("t", "F17", "[4]", 0, 16)), ok_data),
        "tensor 't': unknown dtype \"F17\"");
  }
  SECTION("bad shape values") {
    require_open_fails(
        hand_file("neg.safetensors", braces(entry("t", "F32", "[-4]", 0, 16)), ok_data),
        "tensor 't'");
    require_open_fails(
        hand_file("float.safetensors", braces(entry("t", "F32", "[4.0]", 0, 16)), ok_data),
        "tensor 't'");
  }
  SECTION("offsets out of range") {
    const std::string h = braces(entry("t", "F32", "[4]", 4, 20));
    require_open_fails(hand_file("range.safetensors", h, ok_data),
                       "tensor 't' data_offsets [4, 20] run past");
    require_open_fails(
        hand_file("reversed.safetensors", braces(entry("t", "F32", "[0]", 8, 4)), ok_data),
        "tensor 't'");
  }
  SECTION("overlapping offsets") {
    const std::string h =
        braces(entry("a", "F32", "[3]", 0, 12) + ", " + entry("b", "F32", "[2]", 8, 16));
    require_open_fails(hand_file("overlap.safetensors", h, ok_data),
                       "tensor 'b' overlaps tensor 'a'");
  }
  SECTION("holes in the data buffer") {
    const std::string gap =
        braces(entry("a", "F32", "[1]", 0, 4) + ", " + entry("b", "F32", "[2]", 8, 16));
    require_open_fails(hand_file("gap.safetensors", gap, ok_data), "belong to no tensor");
    const std::string tail = braces(entry("a", "F32", "[3]", 0, 12));
    require_open_fails(hand_file("tail.safetensors", tail, ok_data), "trailing bytes");
  }
  SECTION("offsets not matching shape * dtype size") {
    const std::string h = braces(entry("t", "BF16", "[4]", 0, 16));
    require_open_fails(hand_file("size.safetensors", h, ok_data),
                       "tensor 't': data_offsets [0,16] span 16 bytes");
  }
  SECTION("metadata values must be strings") {
    const std::string h =
        braces(entry("t", "F32", "[4]", 0, 16) + ", \"__metadata__\": {\"step\": 3}");
    require_open_fails(hand_file("meta.safetensors", h, ok_data), "'step' is not a string");
  }
}

TEST_CASE("reading asks for the right tensor, count and dtype") {
  const std::string h =
      braces(entry("f", "F32", "[2]", 0, 8) + ", " + entry("i", "I32", "[2]", 8, 16));
  const std::string path = hand_file("access.safetensors", h, le32f({1, 2, 3, 4}));
  const SafetensorsFile file = SafetensorsFile::open(path);
  std::vector<float> out(4);
  REQUIRE_THROWS_WITH(file.read_f32("f", out.data(), 3),
                      Contains(path) && Contains("'f' has 2 elements"));
  REQUIRE_THROWS_WITH(file.read_f32("i", out.data(), 2),
                      Contains(path) && Contains("'i' has dtype I32"));
  REQUIRE_THROWS_WITH(file.info("nope"), Contains(path) && Contains("no tensor named 'nope'"));
}

TEST_CASE("the writer refuses reserved and repeated names") {
  SafetensorsWriter writer;
  const float x = 1;
  writer.add("a", StDType::F32, {1}, &x);
  REQUIRE_THROWS_WITH(writer.add("a", StDType::F32, {1}, &x), Contains("'a' added twice"));
  REQUIRE_THROWS_WITH(writer.add("__metadata__", StDType::F32, {1}, &x), Contains("reserved"));
  REQUIRE_THROWS_WITH(writer.add_f32("b", {2}, {1.f}), Contains("'b' has 1 values"));
  REQUIRE_THROWS_WITH(writer.write(temp_path("no_such_dir/x.safetensors")),
                      Contains("no_such_dir"));
}
