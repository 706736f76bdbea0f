// Reading and writing the config file: JSON text -> overrides -> preset
// defaults -> typed fields -> derived defaults -> validation.
#include "core/config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/config_schema.h"
#include "core/nearest_name.h"
#include "qianjun/error.h"

namespace qj {
namespace {

using nlohmann::json;
namespace schema = config_schema;

bool contains(const std::vector<std::string>& names, const std::string& name) {
  for (const std::string& n : names) {
    if (n == name) return true;
  }
  return false;
}

// "unknown section 'modl' (did you mean 'model'?)" or "unknown key ..." ; empty if known.
std::string unknown_name(const std::string& section, const std::string& key) {
  const std::vector<std::string> sections = schema::section_names();
  if (!contains(sections, section)) {
    return "unknown section '" + section + "' (did you mean '" +
           nearest_name(section, sections) + "'?)";
  }
  const std::vector<std::string> keys = schema::keys_of(section);
  if (contains(keys, key)) return "";
  // A key put in the wrong section ("model.lr") is suggested where it lives.
  std::string suggestion = section + "." + nearest_name(key, keys);
  for (const std::string& other : sections) {
    if (other != section && contains(schema::keys_of(other), key)) suggestion = other + "." + key;
  }
  return "unknown key '" + section + "." + key + "' (did you mean '" + suggestion + "'?)";
}

// "[json.exception.parse_error.101] parse error at line 3, column 5: ..." without
// the library's tag: the position and the problem are what the user needs.
std::string without_tag(const std::string& what) {
  const size_t tag_end = what.rfind("[json.exception.", 0) == 0 ? what.find("] ") : std::string::npos;
  return tag_end == std::string::npos ? what : what.substr(tag_end + 2);
}

json parse_json_text(const std::string& text, const std::string& source_name) {
  // The keys of the objects being read ("train", "lr"), so that an error inside
  // a value (a number too large for a double) names its field.
  std::vector<std::string> keys;
  const json::parser_callback_t track = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start || event == json::parse_event_t::array_start)
      keys.emplace_back();
    else if (event == json::parse_event_t::object_end || event == json::parse_event_t::array_end)
      keys.pop_back();
    else if (event == json::parse_event_t::key && !keys.empty())
      keys.back() = parsed.get<std::string>();
    return true;
  };
  json doc;
  try {
    doc = json::parse(text, track);
  } catch (const json::exception& e) {
    std::string field;
    for (const std::string& key : keys) {
      if (!key.empty()) field += (field.empty() ? "" : ".") + key;
    }
    throw Error("config: invalid JSON in " + source_name + (field.empty() ? "" : " at " + field) +
                ": " + without_tag(e.what()));
  }
  if (!doc.is_object()) {
    throw Error("config: the top level of " + source_name + " must be a JSON object, got " +
                doc.type_name());
  }
  return doc;
}

// Every section is an object and every key is in the schema.
void check_known_names(const json& doc) {
  for (const auto& section : doc.items()) {
    if (!contains(schema::section_names(), section.key())) {
      throw Error("config: " + unknown_name(section.key(), ""));
    }
    if (!section.value().is_object()) {
      throw Error("config: section '" + section.key() + "' must be a JSON object, got " +
                  section.value().type_name());
    }
    for (const auto& item : section.value().items()) {
      const std::string problem = unknown_name(section.key(), item.key());
      if (!problem.empty()) throw Error("config: " + problem);
    }
  }
}

// "section.key=value": the value is JSON if it parses as JSON, else a string.
void apply_override(json& doc, const std::string& text) {
  const size_t equals = text.find('=');
  const std::string name = text.substr(0, std::min(equals, text.size()));
  const size_t dot = name.find('.');
  if (equals == std::string::npos || dot == std::string::npos || dot == 0 ||
      dot + 1 == name.size() || name.find('.', dot + 1) != std::string::npos) {
    throw Error("config: malformed override '" + text +
                "' (expected section.key=value, e.g. train.lr=3e-4)");
  }
  const std::string section = name.substr(0, dot), key = name.substr(dot + 1);
  const std::string raw = text.substr(equals + 1);
  json value = json::parse(raw, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = raw;
  try {
    (void)value.dump();  // a config holds JSON text: the value must print
  } catch (const json::type_error&) {
    throw Error("config: override '" + name + "=...' has a value that is not valid UTF-8");
  }
  try {
    const std::string problem = unknown_name(section, key);
    if (!problem.empty()) throw Error("config: " + problem);
    schema::check_value_type(section, key, value);
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + " in override '" + text + "'");
  }
  if (!doc.contains(section) || !doc[section].is_object()) doc[section] = json::object();
  doc[section][key] = value;
}

Preset preset_of(const json& doc) {
  Preset preset = Preset::Gpt2;
  if (doc.contains("model") && doc["model"].contains("preset")) {
    schema::read_value(doc["model"]["preset"], preset, "model.preset");
  }
  return preset;
}

Config config_from_json(const json& doc) {
  Config config;
  config.model = model_preset(preset_of(doc));
  schema::for_each_section([&](const auto& section_schema) {
    if (!doc.contains(section_schema.name)) return;
    const json& body = doc[section_schema.name];
    auto& section = config.*section_schema.member;
    for (const auto& field : section_schema.fields) {
      if (body.contains(field.name)) {
        schema::read_field(field, body[field.name], section,
                           std::string(section_schema.name) + "." + field.name);
      }
    }
  });
  return config;
}

}  // namespace

Config parse_config(const std::string& json_text, const std::vector<std::string>& overrides,
                    const std::string& source_name) {
  json doc = parse_json_text(json_text, source_name);
  try {
    check_known_names(doc);
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + " in " + source_name);
  }
  // Overrides are checked as they are applied, so a problem left after them
  // comes from the file.
  for (const std::string& text : overrides) apply_override(doc, text);
  Config config;
  try {
    config = config_from_json(doc);
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + " in " + source_name);
  }
  fill_derived_defaults(config.model);
  validate_config(config);
  return config;
}

std::string read_config_file(const std::string& path) {
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored)) {
    throw Error("config: '" + path + "' is a directory, not a config file");
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error("config: cannot open config file '" + path + "'");
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) throw Error("config: cannot read config file '" + path + "'");
  return text.str();
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  return parse_config(read_config_file(path), overrides, path);
}

std::string config_to_json(const Config& config) {
  nlohmann::ordered_json doc = nlohmann::ordered_json::object();
  schema::for_each_section([&](const auto& section_schema) {
    const auto& section = config.*section_schema.member;
    auto& body = doc[section_schema.name] = nlohmann::ordered_json::object();
    for (const auto& field : section_schema.fields) {
      body[field.name] = schema::write_field(field, section);
    }
  });
  return doc.dump(2) + "\n";
}

}  // namespace qj
