#include "core/command_line.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "core/nearest_name.h"
#include "qianjun/error.h"

#ifndef QJ_VERSION
#define QJ_VERSION "unknown"
#endif

namespace qj {

namespace {

constexpr size_t kHelpColumn = 26;  // where the help text of a flag starts

bool is_flag(const std::string& arg) { return arg.size() > 2 && arg.rfind("--", 0) == 0; }

}  // namespace

// How an option is written in the usage line and the help table: "--config FILE".
std::string CommandLine::spelling(const Option& o) {
  if (o.kind == Kind::Positional) return o.metavar;
  if (o.kind == Kind::Flag) return o.name;
  return o.name + " " + o.metavar;
}

const char* qianjun_version() { return QJ_VERSION; }

CommandLine::CommandLine(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

CommandLine& CommandLine::value(const std::string& name, const std::string& metavar,
                                const std::string& help, OnValue on_value, bool repeats) {
  options_.push_back({Kind::Value, name, metavar, help, std::move(on_value), {}, repeats});
  return *this;
}

CommandLine& CommandLine::values(const std::string& name, const std::string& metavar,
                                 const std::string& help, OnValue on_value) {
  options_.push_back({Kind::Values, name, metavar, help, std::move(on_value), {}, true});
  return *this;
}

CommandLine& CommandLine::flag(const std::string& name, const std::string& help,
                               std::function<void()> on_set) {
  options_.push_back({Kind::Flag, name, "", help, {}, std::move(on_set)});
  return *this;
}

CommandLine& CommandLine::positional(const std::string& metavar, const std::string& help,
                                     OnValue on_value) {
  options_.push_back({Kind::Positional, metavar, metavar, help, std::move(on_value)});
  return *this;
}

CommandLine& CommandLine::required(const std::string& name_or_metavar) {
  Option* option = find(name_or_metavar);
  if (!option) throw Error("CommandLine::required: no option " + name_or_metavar);
  option->required = true;
  return *this;
}

CommandLine& CommandLine::notes(const std::string& text) {
  notes_ = text;
  return *this;
}

CommandLine::Option* CommandLine::find(const std::string& name) {
  for (Option& option : options_)
    if (option.name == name) return &option;
  return nullptr;
}

std::string CommandLine::usage() const {
  std::string line = "usage: " + program_;
  for (const Option& o : options_) {
    std::string shown = spelling(o);
    if (o.kind == Kind::Values || o.repeats) shown += " ...";
    line += o.required ? " " + shown : " [" + shown + "]";
  }
  std::string text = line + "\n" + summary_ + "\n\n";
  auto add = [&](const std::string& left, const std::string& help) {
    std::string row = "  " + left;
    row += row.size() + 1 < kHelpColumn ? std::string(kHelpColumn - row.size(), ' ') : "\n" + std::string(kHelpColumn, ' ');
    text += row + help + "\n";
  };
  for (const Option& o : options_) add(spelling(o), o.help);
  add("-h, --help", "print this and exit");
  add("--version", "print the version and exit");
  if (!notes_.empty()) text += "\n" + notes_ + (notes_.back() == '\n' ? "" : "\n");
  return text;
}

void CommandLine::unknown_flag(const std::string& flag) const {
  std::vector<std::string> names{"--help", "--version"};
  for (const Option& o : options_)
    if (o.kind != Kind::Positional) names.push_back(o.name);
  const std::string bare = flag.substr(0, flag.find('='));
  const std::string near = nearest_name(bare, names);
  const bool close = !near.empty() && edit_distance(bare, near) <= std::max<size_t>(2, bare.size() / 3);
  throw Error("command line: unknown flag '" + bare + "'" +
              (close ? " (did you mean '" + near + "'?)" : std::string()) + "; " + program_ +
              " --help lists the flags");
}

void CommandLine::give(Option& option, const std::string& value) {
  ++option.seen;
  try {
    option.on_value(value);
  } catch (const Error& e) {
    // The callback says what is wrong with the value; name where it came from.
    const std::string what = e.what();
    if (what.find(option.name) != std::string::npos) throw Error("command line: " + what);
    throw Error("command line: " + option.name + ": " + what);
  }
}

void CommandLine::parse(int argc, char** argv) {
  size_t next_positional = 0;
  std::vector<Option*> positionals;
  for (Option& o : options_)
    if (o.kind == Kind::Positional) positionals.push_back(&o);
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(usage().c_str(), stdout);
      std::exit(0);
    }
    if (arg == "--version") {
      std::printf("%s %s\n", program_.c_str(), qianjun_version());
      std::exit(0);
    }
    if (!is_flag(arg)) {
      if (arg.size() > 1 && arg[0] == '-') unknown_flag(arg);
      if (next_positional >= positionals.size())
        throw Error("command line: unexpected argument '" + arg + "'" +
                    (positionals.empty() ? " (every value follows its flag)" : "") + "; " + program_ +
                    " --help lists the flags");
      give(*positionals[next_positional++], arg);
      continue;
    }
    const size_t equals = arg.find('=');
    const std::string name = arg.substr(0, equals);
    Option* option = find(name);
    if (!option || option->kind == Kind::Positional) unknown_flag(arg);
    if (option->kind == Kind::Flag) {
      if (equals != std::string::npos) throw Error("command line: " + name + " takes no value");
      ++option->seen;
      option->on_set();
      continue;
    }
    if (equals != std::string::npos) {
      give(*option, arg.substr(equals + 1));
    } else if (option->kind == Kind::Values) {
      const int before = option->seen;
      while (i + 1 < argc && !is_flag(argv[i + 1])) give(*option, argv[++i]);
      if (option->seen == before)
        throw Error("command line: " + name + " needs at least one " + option->metavar);
    } else {
      if (i + 1 >= argc) throw Error("command line: " + name + " needs a value (" + option->metavar + ")");
      give(*option, argv[++i]);
    }
  }
  for (const Option& o : options_)
    if (o.required && o.seen == 0)
      throw Error("command line: " + o.name + (o.kind == Kind::Positional ? " is missing" : " is required") +
                  "; " + program_ + " --help lists the flags");
}

int64_t parse_integer(const std::string& what, const std::string& text, int64_t low, int64_t high) {
  size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value < low || value > high)
    throw Error(what + " needs an integer in [" + std::to_string(low) + ", " + std::to_string(high) +
                "], got '" + text + "'");
  return value;
}

double parse_real(const std::string& what, const std::string& text, double low, double high) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(value) || value < low || value > high) {
    char range[64];
    std::snprintf(range, sizeof range, "[%g, %g]", low, high);
    throw Error(what + " needs a number in " + range + ", got '" + text + "'");
  }
  return value;
}

}  // namespace qj
