#include "data/text_sources.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "qianjun/error.h"

namespace qj {

namespace fs = std::filesystem;

namespace {

TextFormat format_of(const fs::path& path) {
  const std::string extension = path.extension().string();
  return extension == ".jsonl" || extension == ".json" ? TextFormat::Jsonl : TextFormat::Plain;
}

TextSource source_of(const fs::path& path) {
  std::error_code error;
  const uintmax_t bytes = fs::file_size(path, error);
  return {path.string(), format_of(path), error ? 0 : uint64_t(bytes)};
}

// Every regular file below `folder`, sorted by path (so the order does not
// depend on the file system's directory order).
std::vector<fs::path> files_below(const std::string& folder) {
  std::vector<fs::path> files;
  std::error_code error;
  fs::recursive_directory_iterator it(folder, error), end;
  for (; !error && it != end; it.increment(error)) {
    if (it->is_regular_file()) files.push_back(it->path());
  }
  if (error) throw Error("cannot list input folder " + folder + ": " + error.message());
  std::sort(files.begin(), files.end());
  return files;
}

[[noreturn]] void cannot_read(const std::string& path) {
  throw Error("cannot read input " + path + ": " + std::strerror(errno));
}

}  // namespace

std::vector<TextSource> list_text_sources(const std::vector<std::string>& inputs) {
  std::vector<TextSource> sources;
  for (const std::string& input : inputs) {
    std::error_code error;
    const fs::file_status status = fs::status(input, error);
    if (!fs::exists(status)) throw Error("input " + input + " does not exist");
    if (fs::is_directory(status)) {
      const std::vector<fs::path> files = files_below(input);
      if (files.empty()) throw Error("input folder " + input + " holds no files");
      for (const fs::path& file : files) sources.push_back(source_of(file));
    } else if (fs::is_regular_file(status)) {
      sources.push_back(source_of(input));
    } else {
      throw Error("input " + input + " is neither a file nor a folder");
    }
  }
  return sources;
}

DocumentReader::DocumentReader(std::vector<TextSource> sources, JsonlErrors on_error,
                               std::function<void(const std::string&)> warn)
    : sources_(std::move(sources)), on_error_(on_error), warn_(std::move(warn)) {}

bool DocumentReader::next(TextDocument& document) {
  for (;;) {
    if (jsonl_.is_open()) {
      if (next_jsonl_line(document)) return true;
      jsonl_.close();
    }
    if (next_source_ == sources_.size()) return false;
    const TextSource& source = sources_[next_source_++];
    if (source.format == TextFormat::Plain) {
      read_plain_file(source, document);
      return true;
    }
    jsonl_.clear();
    jsonl_.open(source.path, std::ios::binary);
    if (!jsonl_) cannot_read(source.path);
    jsonl_path_ = source.path;
    line_number_ = 0;
  }
}

void DocumentReader::read_plain_file(const TextSource& source, TextDocument& document) {
  std::ifstream file(source.path, std::ios::binary);
  if (!file) cannot_read(source.path);
  file.seekg(0, std::ios::end);
  const std::streamoff size = file.tellg();
  if (size < 0) cannot_read(source.path);
  file.seekg(0);
  document.text.resize(size_t(size));
  if (size > 0 && !file.read(document.text.data(), size)) cannot_read(source.path);
  document.origin = source.path;
  bytes_read_ += uint64_t(size);
}

// Reads lines until one holds a document; false at the end of the file.
bool DocumentReader::next_jsonl_line(TextDocument& document) {
  while (std::getline(jsonl_, line_)) {
    ++line_number_;
    bytes_read_ += line_.size() + 1;
    if (line_.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
    const std::string origin = jsonl_path_ + ":" + std::to_string(line_number_);
    std::string problem;
    if (text_of_line(line_, document.text, &problem)) {
      document.origin = origin;
      return true;
    }
    if (on_error_ == JsonlErrors::Fatal) throw Error(origin + ": malformed JSONL line: " + problem);
    ++skipped_lines_;
    if (warn_) warn_(origin + ": skipped malformed JSONL line: " + problem);
  }
  if (jsonl_.bad()) cannot_read(jsonl_path_);
  return false;
}

bool DocumentReader::text_of_line(const std::string& line, std::string& text, std::string* problem) {
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or a number beyond a double
    *problem = std::string("not valid JSON (") + e.what() + ")";
    return false;
  }
  if (!value.is_object()) {
    *problem = std::string("expected a JSON object, got ") + value.type_name();
    return false;
  }
  const auto found = value.find("text");
  if (found == value.end()) {
    *problem = "the object has no \"text\" field";
    return false;
  }
  if (!found->is_string()) {
    *problem = std::string("\"text\" must be a string, got ") + found->type_name();
    return false;
  }
  text = found->get_ref<const std::string&>();
  return true;
}

}  // namespace qj
