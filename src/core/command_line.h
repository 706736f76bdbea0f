#pragma once
// One flag parser for every program (qj-train, qj-plan, qj-prep, qj-sample,
// qj-ckpt, qj-backend-test, qj-make-corpus): the same --help layout, the same
// one-line errors (an unknown flag is answered with the nearest known name),
// and --version everywhere. Each program declares its flags with a callback
// that stores or checks the value; a callback's qj::Error gets the flag's name.
//
//   qj::CommandLine cli("qj-plan", "print the memory plan of a config");
//   cli.value("--config", "FILE.json", "the training config (required)", [&](auto v) { config = v; })
//      .required("--config");
//   cli.parse(argc, argv);   // --help / --version print and exit 0
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace qj {

class CommandLine {
 public:
  using OnValue = std::function<void(const std::string&)>;

  CommandLine(std::string program, std::string summary);

  // --name VALUE or --name=VALUE. Given twice, the later one wins, unless
  // `repeats` (then every occurrence calls on_value in order).
  CommandLine& value(const std::string& name, const std::string& metavar, const std::string& help,
                     OnValue on_value, bool repeats = false);
  // --name V1 V2 ...: every argument up to the next one starting with "--".
  CommandLine& values(const std::string& name, const std::string& metavar, const std::string& help,
                      OnValue on_value);
  // --name alone.
  CommandLine& flag(const std::string& name, const std::string& help, std::function<void()> on_set);
  // A bare argument, matched in the order declared (qj-ckpt COMMAND DIR).
  CommandLine& positional(const std::string& metavar, const std::string& help, OnValue on_value);
  // Parsing fails unless this flag or positional was given.
  CommandLine& required(const std::string& name_or_metavar);
  // A paragraph printed at the end of --help (exit codes, examples).
  CommandLine& notes(const std::string& text);

  // Handles --help/-h (usage on stdout, exit 0) and --version (exit 0); throws
  // qj::Error "command line: ..." for anything else it cannot accept.
  void parse(int argc, char** argv);
  std::string usage() const;
  const std::string& program() const { return program_; }

 private:
  enum class Kind { Value, Values, Flag, Positional };
  struct Option {
    Kind kind;
    std::string name;  // "--config"; the metavar for a positional
    std::string metavar;
    std::string help;
    OnValue on_value;
    std::function<void()> on_set;
    bool repeats = false;
    bool required = false;
    int seen = 0;
  };
  static std::string spelling(const Option& option);
  Option* find(const std::string& name);
  void give(Option& option, const std::string& value);
  [[noreturn]] void unknown_flag(const std::string& flag) const;

  std::string program_;
  std::string summary_;
  std::string notes_;
  std::vector<Option> options_;
};

// The version every program prints with --version: "0.1.0", from CMake's project().
const char* qianjun_version();

// A whole-string number within [low, high], or a qj::Error naming `what`
// (a flag or key) and the range: "--tokens needs an integer in [1, 1048576], got 'x'".
int64_t parse_integer(const std::string& what, const std::string& text, int64_t low, int64_t high);
double parse_real(const std::string& what, const std::string& text, double low, double high);

}  // namespace qj
