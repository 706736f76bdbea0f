#pragma once
// The config file's schema: every key of every section, bound to the struct
// field it fills. Parsing, printing and "did you mean" all walk this one list,
// so a field added to config.h needs one line here and nothing else.
#include <cstdint>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"

namespace qj::config_schema {

// Every field type; a new config enum (config_enums.h) is listed here once.
template <class Section>
using Member =
    std::variant<int Section::*, double Section::*, bool Section::*, std::string Section::*,
                 uint64_t Section::*, Preset Section::*, Norm Section::*, Activation Section::*,
                 Position Section::*, Recompute Section::*, PipeSchedule Section::*,
                 Precision Section::*, Optimizer Section::*, Encryption Section::*,
                 MoeRouter Section::*, std::vector<std::string> Section::*>;

template <class Section>
struct Field {
  const char* name;
  Member<Section> member;
};

template <class Section>
struct SectionSchema {
  const char* name;
  Section Config::*member;
  std::vector<Field<Section>> fields;
};

const SectionSchema<ModelConfig>& model_section();
const SectionSchema<ParallelConfig>& parallel_section();
const SectionSchema<TrainConfig>& train_section();
const SectionSchema<OptimConfig>& optim_section();
const SectionSchema<DataConfig>& data_section();
const SectionSchema<TokenizerConfig>& tokenizer_section();
const SectionSchema<CheckpointConfig>& checkpoint_section();
const SectionSchema<BackendConfig>& backend_section();

// Calls visit(schema) for each section, in file order.
template <class Visit>
void for_each_section(Visit&& visit) {
  visit(model_section());
  visit(parallel_section());
  visit(train_section());
  visit(optim_section());
  visit(data_section());
  visit(tokenizer_section());
  visit(checkpoint_section());
  visit(backend_section());
}

std::vector<std::string> section_names();
// Keys of one section; empty if there is no such section.
std::vector<std::string> keys_of(const std::string& section);

// Converts one JSON value into a field, checking its type and range of
// representation; `field` ("model.hidden") names it in the error.
void read_value(const nlohmann::json& value, int& out, const std::string& field);
void read_value(const nlohmann::json& value, double& out, const std::string& field);
void read_value(const nlohmann::json& value, bool& out, const std::string& field);
void read_value(const nlohmann::json& value, std::string& out, const std::string& field);
void read_value(const nlohmann::json& value, uint64_t& out, const std::string& field);
void read_value(const nlohmann::json& value, std::vector<std::string>& out, const std::string& field);
// A choice is a string from the enum's table; any other name gets "did you mean".
template <ConfigEnum E>
void read_value(const nlohmann::json& value, E& out, const std::string& field) {
  std::string name;
  read_value(value, name, field);
  out = parse_choice<E>(name, field);
}

template <class Section>
void read_field(const Field<Section>& field, const nlohmann::json& value, Section& section,
                const std::string& dotted_name) {
  std::visit([&](auto member) { read_value(value, section.*member, dotted_name); }, field.member);
}

template <class Section>
nlohmann::ordered_json write_field(const Field<Section>& field, const Section& section) {
  return std::visit(
      [&](auto member) {
        const auto& value = section.*member;
        if constexpr (ConfigEnum<std::decay_t<decltype(value)>>)
          return nlohmann::ordered_json(to_string(value));  // its name, not its number
        else
          return nlohmann::ordered_json(value);
      },
      field.member);
}

// Throws qj::Error if `value` cannot go into section.key (which must exist).
void check_value_type(const std::string& section, const std::string& key,
                      const nlohmann::json& value);

}  // namespace qj::config_schema
