#include "checkpoint/manifest.h"

#include <nlohmann/json.hpp>

#include "checkpoint/hf_names.h"
#include "qianjun/error.h"

namespace qj {

using nlohmann::json;

namespace {

json seal_to_json(const SealInfo& s) {
  return {{"iv", to_hex(s.iv.data(), s.iv.size())}, {"tag", to_hex(s.tag.data(), s.tag.size())}};
}

SealInfo seal_from_json(const json& j, const std::string& what) {
  SealInfo s;
  const std::vector<uint8_t> iv = from_hex(j.at("iv").get<std::string>(), what + " iv");
  const std::vector<uint8_t> tag = from_hex(j.at("tag").get<std::string>(), what + " tag");
  QJ_CHECK(iv.size() == s.iv.size() && tag.size() == s.tag.size(),
           what + ": iv must be 12 bytes and tag 16 bytes");
  std::copy(iv.begin(), iv.end(), s.iv.begin());
  std::copy(tag.begin(), tag.end(), s.tag.begin());
  return s;
}

json to_json(const Manifest& m) {
  json tensors = json::object();
  for (const auto& [name, t] : m.tensors) {
    json chunks = json::array();
    for (const ChunkRecord& c : t.chunks) {
      json jc = {{"file", c.file}, {"offset", c.offset}, {"length", c.length},
                 {"global_offset", c.global_offset}, {"shape", c.shape}, {"sha256", c.sha256}};
      if (c.seal) jc["seal"] = seal_to_json(*c.seal);
      chunks.push_back(std::move(jc));
    }
    tensors[name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"chunks", std::move(chunks)}};
  }
  json j = {
      {"format", "qianjun-checkpoint"},
      {"format_version", std::to_string(m.format_major) + "." + std::to_string(m.format_minor)},
      {"id", m.id},
      {"step", m.step},
      {"consumed_samples", m.consumed_samples},
      {"optimizer", {{"name", "adamw"}, {"steps", m.optimizer_steps}}},
      {"rng", {{"seed", m.seed}, {"data_shuffle", m.shuffle}}},
      {"model", json::parse(m.model_json)},
      {"mesh", {{"tp", m.mesh.tp}, {"pp", m.mesh.pp}, {"dp", m.mesh.dp},
                {"virtual_stages", m.mesh.virtual_stages}, {"zero", m.mesh.zero},
                {"sequence_parallel", m.mesh.sequence_parallel}, {"schedule", m.mesh.schedule},
                {"precision", m.mesh.precision}}},
      {"encryption", {{"cipher", m.encryption}}},
      {"files", m.files},
      {"tensors", std::move(tensors)},
  };
  if (m.key_check) j["encryption"]["key_check"] = seal_to_json(*m.key_check);
  return j;
}

// The hash covers the manifest without its own hash field, in one fixed rendering.
std::string body_hash(const json& body) { return sha256_hex(body.dump().data(), body.dump().size()); }

void parse_version(const json& j, Manifest& m, const std::string& where) {
  const std::string v = j.at("format_version").get<std::string>();
  const size_t dot = v.find('.');
  try {
    m.format_major = std::stoi(v.substr(0, dot));
    m.format_minor = dot == std::string::npos ? 0 : std::stoi(v.substr(dot + 1));
  } catch (const std::exception&) {
    throw Error(where + ": format_version '" + v + "' is not major.minor");
  }
  if (m.format_major > kCheckpointMajor)
    throw Error(where + ": checkpoint format " + v + " is newer than this reader's " +
                std::to_string(kCheckpointMajor) + "." + std::to_string(kCheckpointMinor) +
                " (a newer major version changes the layout); use a newer Qianjun");
  if (m.format_major < 1) throw Error(where + ": unknown checkpoint format version " + v);
}

Manifest from_json(const json& j, const std::string& where) {
  Manifest m;
  QJ_CHECK(j.value("format", "") == "qianjun-checkpoint",
           where + ": not a Qianjun checkpoint manifest (no \"format\": \"qianjun-checkpoint\")");
  parse_version(j, m, where);
  m.id = j.at("id").get<std::string>();
  m.step = j.at("step").get<int64_t>();
  m.consumed_samples = j.at("consumed_samples").get<uint64_t>();
  m.optimizer_steps = j.at("optimizer").at("steps").get<int>();
  m.seed = j.at("rng").at("seed").get<uint64_t>();
  m.shuffle = j.at("rng").at("data_shuffle").get<bool>();
  m.model_json = j.at("model").dump();
  const json& mesh = j.at("mesh");
  m.mesh = {mesh.at("tp").get<int>(), mesh.at("pp").get<int>(), mesh.at("dp").get<int>(),
            mesh.at("virtual_stages").get<int>(), mesh.at("zero").get<int>(),
            mesh.at("sequence_parallel").get<bool>(), mesh.at("schedule").get<std::string>(),
            mesh.at("precision").get<std::string>()};
  m.encryption = j.at("encryption").at("cipher").get<std::string>();
  if (j.at("encryption").contains("key_check"))
    m.key_check = seal_from_json(j["encryption"]["key_check"], where + ": key_check");
  m.files = j.at("files").get<std::map<std::string, uint64_t>>();
  for (const auto& [name, t] : j.at("tensors").items()) {
    TensorRecord record{t.at("dtype").get<std::string>(), t.at("shape").get<std::vector<int64_t>>(), {}};
    for (const json& c : t.at("chunks")) {
      ChunkRecord chunk{c.at("file").get<std::string>(), c.at("offset").get<uint64_t>(),
                        c.at("length").get<uint64_t>(),
                        c.at("global_offset").get<std::vector<int64_t>>(),
                        c.at("shape").get<std::vector<int64_t>>(), c.at("sha256").get<std::string>(),
                        std::nullopt};
      if (c.contains("seal")) chunk.seal = seal_from_json(c["seal"], where + ": " + name);
      record.chunks.push_back(std::move(chunk));
    }
    m.tensors[name] = std::move(record);
  }
  return m;
}

}  // namespace

std::string manifest_to_json(const Manifest& manifest) {
  json j = to_json(manifest);
  j["manifest_sha256"] = body_hash(j);
  return j.dump(1) + "\n";
}

Manifest parse_manifest(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(where + ": not valid JSON (" + e.what() + "): the manifest is damaged");
  }
  if (!j.is_object() || !j.contains("manifest_sha256") || !j["manifest_sha256"].is_string())
    throw Error(where + ": no manifest_sha256: not a complete Qianjun checkpoint manifest");
  const std::string want = j["manifest_sha256"].get<std::string>();
  j.erase("manifest_sha256");
  if (j.contains("format_version") && j["format_version"].is_string()) {
    Manifest version;  // a newer major is refused before anything else is judged
    parse_version(j, version, where);
  }
  if (body_hash(j) != want)
    throw Error(where + ": manifest_sha256 does not match its contents: the manifest is damaged");
  try {
    return from_json(j, where);
  } catch (const json::exception& e) {
    throw Error(where + ": malformed manifest (" + e.what() + ")");
  }
}

std::string chunk_aad(const std::string& checkpoint_id, const std::string& tensor,
                      const std::vector<int64_t>& global_offset) {
  return "qianjun chunk\n" + checkpoint_id + "\n" + tensor + "\n" + shape_to_string(global_offset);
}

}  // namespace qj
