// The flag parser every program uses (src/core/command_line.h).
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include "core/command_line.h"
#include "qianjun/error.h"

namespace {

// Parses `args` (without the program name) with a CommandLine built by `declare`.
struct Parsed {
  std::string config, output;
  std::vector<std::string> sets, inputs, positionals;
  bool verbose = false;
  int64_t count = 0;
};

void parse(Parsed& p, std::vector<std::string> args) {
  qj::CommandLine cli("qj-test", "a test program");
  cli.value("--config", "FILE", "config", [&](const std::string& v) { p.config = v; })
      .value("--set", "K=V", "override", [&](const std::string& v) { p.sets.push_back(v); }, true)
      .values("--input", "PATH", "inputs", [&](const std::string& v) { p.inputs.push_back(v); })
      .value("--count", "N", "a number", [&](const std::string& v) { p.count = qj::parse_integer("--count", v, 0, 10); })
      .value("--output", "DIR", "no check", [&](const std::string& v) {
        if (v.empty()) throw qj::Error("must not be empty");
        p.output = v;
      })
      .flag("--verbose", "talk", [&] { p.verbose = true; })
      .positional("COMMAND", "what to do", [&](const std::string& v) { p.positionals.push_back(v); })
      .required("--config");
  std::vector<char*> argv{const_cast<char*>("qj-test")};
  for (std::string& a : args) argv.push_back(a.data());
  cli.parse(int(argv.size()), argv.data());
}

Parsed parsed(std::vector<std::string> args) {
  Parsed p;
  parse(p, std::move(args));
  return p;
}

std::string error_of(std::vector<std::string> args) {
  try {
    parsed(std::move(args));
  } catch (const qj::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("flags take their values in both spellings; the later wins unless repeatable") {
  const Parsed p = parsed({"run", "--config", "a.json", "--set", "x=1", "--set=y=2", "--config=b.json",
                           "--verbose", "--count", "7"});
  CHECK(p.config == "b.json");
  CHECK(p.sets == std::vector<std::string>{"x=1", "y=2"});
  CHECK(p.verbose);
  CHECK(p.count == 7);
  CHECK(p.positionals == std::vector<std::string>{"run"});
}

TEST_CASE("a multi-value flag takes everything up to the next flag, dashes inside values included") {
  const Parsed p = parsed({"--input", "a", "-", "b-c", "--config", "c"});
  CHECK(p.inputs == std::vector<std::string>{"a", "-", "b-c"});
  CHECK(error_of({"--config", "c", "--input", "--verbose"}) ==
        "command line: --input needs at least one PATH");
}

TEST_CASE("errors are one line naming the flag") {
  CHECK(error_of({"--config", "c", "--confg", "d"}) ==
        "command line: unknown flag '--confg' (did you mean '--config'?); qj-test --help lists the flags");
  CHECK(error_of({"--config", "c", "--zzzzzzzz=1"}) ==
        "command line: unknown flag '--zzzzzzzz'; qj-test --help lists the flags");
  CHECK(error_of({"--config", "c", "-v"}).find("unknown flag '-v'") != std::string::npos);
  CHECK(error_of({"--verbose"}) == "command line: --config is required; qj-test --help lists the flags");
  CHECK(error_of({"--config"}) == "command line: --config needs a value (FILE)");
  CHECK(error_of({"--config", "c", "--verbose=1"}) == "command line: --verbose takes no value");
  CHECK(error_of({"--config", "c", "one", "two"}) ==
        "command line: unexpected argument 'two'; qj-test --help lists the flags");
  CHECK(error_of({"--config", "c", "--count", "11"}) ==
        "command line: --count needs an integer in [0, 10], got '11'");
  CHECK(error_of({"--config", "c", "--count", "3x"}) ==
        "command line: --count needs an integer in [0, 10], got '3x'");
  // A callback's error that does not name the flag gets its name.
  CHECK(error_of({"--config", "c", "--output="}) == "command line: --output: must not be empty");
}

TEST_CASE("numbers are whole strings within their range") {
  CHECK(qj::parse_integer("n", "-5", -10, 10) == -5);
  CHECK_THROWS_WITH(qj::parse_integer("n", "", 0, 1), "n needs an integer in [0, 1], got ''");
  CHECK_THROWS_WITH(qj::parse_integer("n", "99999999999999999999", 0, 1),
                    "n needs an integer in [0, 1], got '99999999999999999999'");
  CHECK(qj::parse_real("t", "0.25", 0, 1) == 0.25);
  CHECK_THROWS_WITH(qj::parse_real("t", "nan", 0, 1), "t needs a number in [0, 1], got 'nan'");
  CHECK_THROWS_WITH(qj::parse_real("t", "1e400", 0, 1e300), Catch::Contains("got '1e400'"));
}

TEST_CASE("usage lists every flag in declaration order, required ones without brackets") {
  qj::CommandLine cli("qj-test", "a test program");
  cli.value("--config", "FILE", "the config", [](const std::string&) {})
      .flag("--dry-run", "plan only", [] {})
      .required("--config")
      .notes("exit codes: 0 ok");
  const std::string usage = cli.usage();
  CHECK(usage.rfind("usage: qj-test --config FILE [--dry-run]\na test program\n\n", 0) == 0);
  CHECK(usage.find("  --config FILE           the config\n") != std::string::npos);
  CHECK(usage.find("  --dry-run               plan only\n") != std::string::npos);
  CHECK(usage.find("\nexit codes: 0 ok\n") != std::string::npos);
}
