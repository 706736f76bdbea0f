#pragma once
// The config's closed choices ("norm": "rmsnorm") as enums. Each enum has one
// table of names, indexed by its values: parsing, printing (config_to_json,
// qj-plan, manifests) and the "did you mean" error all read that table.
#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace qj {

enum class Preset { Gpt2, Llama };
enum class Norm { LayerNorm, RmsNorm };
enum class Activation { Gelu, SwiGlu };
enum class Position { Learned, Rope };
enum class Recompute { None, Selective, Full };  // what backward recomputes
enum class PipeSchedule { GPipe, OneFOneB, Interleaved };
enum class Precision { Fp32, Bf16 };
enum class Optimizer { AdamW };
enum class Encryption { None, Aes256Gcm, Sm4Gcm };
enum class MoeRouter { Softmax, Sigmoid };  // how router logits become expert scores

// names[i] is the JSON name of the enumerator whose value is i.
template <class E>
struct EnumNames;
template <> struct EnumNames<Preset> { static constexpr std::array names{"gpt2", "llama"}; };
template <> struct EnumNames<Norm> { static constexpr std::array names{"layernorm", "rmsnorm"}; };
template <> struct EnumNames<Activation> { static constexpr std::array names{"gelu", "swiglu"}; };
template <> struct EnumNames<Position> { static constexpr std::array names{"learned", "rope"}; };
template <> struct EnumNames<Recompute> {
  static constexpr std::array names{"none", "selective", "full"};
};
template <> struct EnumNames<PipeSchedule> {
  static constexpr std::array names{"gpipe", "1f1b", "interleaved"};
};
template <> struct EnumNames<Precision> { static constexpr std::array names{"fp32", "bf16"}; };
template <> struct EnumNames<Optimizer> { static constexpr std::array names{"adamw"}; };
template <> struct EnumNames<MoeRouter> { static constexpr std::array names{"softmax", "sigmoid"}; };
template <> struct EnumNames<Encryption> {
  static constexpr std::array names{"none", "aes-256-gcm", "sm4-gcm"};
};

template <class E>
concept ConfigEnum = requires { EnumNames<E>::names; };

template <ConfigEnum E>
std::string to_string(E value) {
  return EnumNames<E>::names[size_t(value)];
}

template <ConfigEnum E>
std::optional<E> from_string(std::string_view name) {
  const auto& names = EnumNames<E>::names;
  for (size_t i = 0; i < names.size(); ++i) {
    if (name == names[i]) return E(i);
  }
  return std::nullopt;
}

// "gpipe, 1f1b, interleaved"
std::string join_names(std::span<const char* const> names);
template <ConfigEnum E>
std::string names_list() {
  return join_names(EnumNames<E>::names);
}

// Throws qj::Error("config: model.norm='batchnorm' is not one of: layernorm,
// rmsnorm (did you mean 'rmsnorm'?)").
[[noreturn]] void unknown_choice(const std::string& field, const std::string& name,
                                 std::span<const char* const> names);

// The enumerator called `name`, or the error above naming `field`.
template <ConfigEnum E>
E parse_choice(const std::string& name, const std::string& field) {
  if (const std::optional<E> value = from_string<E>(name)) return *value;
  unknown_choice(field, name, EnumNames<E>::names);
}

}  // namespace qj
