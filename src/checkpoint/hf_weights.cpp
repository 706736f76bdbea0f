// Import and export of model weights as Hugging Face safetensors files.
// The name/layout correspondence lives in hf_names.cpp; this file moves bytes.
#include "checkpoint/hf_weights.h"

#include <algorithm>
#include <map>
#include <set>

#include "checkpoint/hf_names.h"
#include "checkpoint/safetensors.h"
#include "qianjun/error.h"

namespace qj {

namespace {

struct ParamPlan {
  std::string name;
  Tensor tensor;  // value or grad
  std::vector<HfPiece> pieces;
};

// Rows are those of the 2-D flattening [numel / width, width] (hf_names.h).
int64_t row_width(const Tensor& t) { return t.ndim == 1 ? 1 : t.shape[t.ndim - 1]; }

std::vector<ParamPlan> plan_params(const ModelConfig& config, const std::vector<ParamRef>& params,
                                   bool use_grads, HfMoeNames moe_names) {
  std::vector<ParamPlan> plans;
  std::set<std::string> hf_names;
  for (const ParamRef& p : params) {
    const Tensor& t = use_grads ? p.grad : p.value;
    const char* what = use_grads ? "gradient" : "value";
    QJ_CHECK(t.defined(), "parameter '" + p.name + "' has no " + what + " tensor");
    QJ_CHECK(t.dtype == DType::F32 && t.is_contiguous(),
             "parameter '" + p.name + "' " + what + " must be a contiguous fp32 tensor, got " +
                 dtype_name(t.dtype));
    ParamPlan plan{p.name, t, hf_pieces(config, p.name, t, moe_names)};
    for (const HfPiece& piece : plan.pieces)
      QJ_CHECK(hf_names.insert(piece.hf_name).second,
               "two parameters map to the Hugging Face tensor '" + piece.hf_name + "'");
    plans.push_back(std::move(plan));
  }
  return plans;
}

std::vector<float> to_host(const Backend& backend, const Tensor& t) {
  std::vector<float> host(size_t(t.numel()));
  backend.copy_to_host(host.data(), t.data, t.nbytes());
  return host;
}

// Rows [row_begin, row_end) of a [rows, width] host array, transposed if asked.
std::vector<float> extract_piece(const std::vector<float>& param, int64_t width,
                                 const HfPiece& piece) {
  const int64_t rows = piece.row_end - piece.row_begin;
  std::vector<float> out(size_t(rows * width));
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = param.data() + (piece.row_begin + r) * width;
    for (int64_t j = 0; j < width; ++j) {
      if (piece.transposed)
        out[size_t(j * rows + r)] = src[j];
      else
        out[size_t(r * width + j)] = src[j];
    }
  }
  return out;
}

// The inverse of extract_piece. `file_rows` >= the piece's rows: a wpe made for
// a longer context contributes only its first rows.
void place_piece(const std::vector<float>& file_values, int64_t file_rows, int64_t width,
                 const HfPiece& piece, std::vector<float>& param) {
  const int64_t rows = piece.row_end - piece.row_begin;
  for (int64_t r = 0; r < rows; ++r) {
    float* dst = param.data() + (piece.row_begin + r) * width;
    for (int64_t j = 0; j < width; ++j)
      dst[j] = piece.transposed ? file_values[size_t(j * file_rows + r)]
                                : file_values[size_t(r * width + j)];
  }
}

// Canonical HF name -> the name as it appears in the file.
std::map<std::string, std::string> canonical_names(const SafetensorsFile& file) {
  std::map<std::string, std::string> names;
  for (const std::string& name : file.names()) {
    const std::string canonical = canonical_hf_name(name);
    auto [it, inserted] = names.emplace(canonical, name);
    if (!inserted)
      throw Error("safetensors file " + file.path() + ": both '" + it->second + "' and '" + name +
                  "' name the tensor '" + canonical + "'");
  }
  return names;
}

void check_no_extra_tensors(const SafetensorsFile& file, const ModelConfig& config,
                            HfMoeNames moe_names,
                            const std::map<std::string, std::string>& in_file,
                            const std::set<std::string>& expected) {
  std::vector<std::string> extra;
  for (const auto& [canonical, name] : in_file)
    if (!expected.count(canonical) && !is_ignored_hf_tensor(config, canonical))
      extra.push_back(name);
  if (extra.empty()) return;
  std::string list;
  for (size_t i = 0; i < extra.size() && i < 5; ++i) list += (i ? ", '" : "'") + extra[i] + "'";
  if (extra.size() > 5) list += " and " + std::to_string(extra.size() - 5) + " more";
  throw Error("safetensors file " + file.path() + ": " + std::to_string(extra.size()) +
              " tensor(s) that this model (" + hf_names_description(config, moe_names) +
              ") does not have: " + list);
}

void check_piece(const SafetensorsFile& file, const std::string& file_name, const ParamPlan& plan,
                 const HfPiece& piece) {
  const StTensorInfo& info = file.info(file_name);
  const std::vector<int64_t> expected = piece.hf_shape(plan.tensor);
  const bool shape_ok =
      info.shape == expected ||
      (piece.file_may_have_more_rows && info.shape.size() == expected.size() &&
       info.shape[0] >= expected[0] &&
       std::equal(info.shape.begin() + 1, info.shape.end(), expected.begin() + 1));
  if (!shape_ok)
    throw Error("safetensors file " + file.path() + ": tensor '" + file_name + "' has shape " +
                shape_to_string(info.shape) + ", expected " + shape_to_string(expected) +
                (piece.file_may_have_more_rows ? " (or more rows)" : "") + " for our '" +
                plan.name + "'");
  const StDType t = info.dtype;
  if (t != StDType::F32 && t != StDType::BF16 && t != StDType::F16 && t != StDType::F64)
    throw Error("safetensors file " + file.path() + ": tensor '" + file_name + "' has dtype " +
                st_dtype_name(t) + "; weights must be F32, BF16, F16 or F64");
}

}  // namespace

void import_hf_safetensors(const std::string& path, const ModelConfig& config,
                           const std::vector<ParamRef>& params, const Backend& backend) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  const std::map<std::string, std::string> in_file = canonical_names(file);
  std::vector<std::string> file_names;
  for (const auto& [canonical, name] : in_file) file_names.push_back(canonical);
  const HfMoeNames moe_names = moe_names_in_file(config, file_names, path);
  const std::vector<ParamPlan> plans = plan_params(config, params, /*use_grads=*/false, moe_names);

  // Check everything before touching any parameter.
  std::set<std::string> expected;
  for (const ParamPlan& plan : plans) {
    for (const HfPiece& piece : plan.pieces) {
      expected.insert(piece.hf_name);
      auto it = in_file.find(piece.hf_name);
      if (it == in_file.end())
        throw Error("safetensors file " + path + ": missing tensor '" + piece.hf_name +
                    "' of shape " + shape_to_string(piece.hf_shape(plan.tensor)) + " (for our '" +
                    plan.name + "')");
      check_piece(file, it->second, plan, piece);
    }
  }
  check_no_extra_tensors(file, config, moe_names, in_file, expected);

  backend.synchronize();
  for (const ParamPlan& plan : plans) {
    std::vector<float> host(size_t(plan.tensor.numel()), 0.f);  // rows no piece covers stay zero
    for (const HfPiece& piece : plan.pieces) {
      const std::string& file_name = in_file.at(piece.hf_name);
      const StTensorInfo& info = file.info(file_name);
      std::vector<float> values(size_t(info.numel()));
      file.read_f32(file_name, values.data(), values.size());
      place_piece(values,
                  info.shape.size() == 2 && piece.transposed ? info.shape[1] : info.shape[0],
                  row_width(plan.tensor), piece, host);
    }
    backend.copy_to_device(plan.tensor.data, host.data(), plan.tensor.nbytes());
  }
  backend.synchronize();
}

std::vector<HfTensor> hf_tensors(const ModelConfig& config, const std::vector<ParamRef>& params,
                                 const Backend& backend, bool grads) {
  const std::vector<ParamPlan> plans = plan_params(config, params, grads, default_moe_names(config));
  backend.synchronize();
  std::vector<HfTensor> tensors;
  for (const ParamPlan& plan : plans) {
    const std::vector<float> host = to_host(backend, plan.tensor);
    for (const HfPiece& piece : plan.pieces)
      tensors.push_back({piece.hf_name, piece.hf_shape(plan.tensor),
                         extract_piece(host, row_width(plan.tensor), piece)});
  }
  return tensors;
}

void export_hf_safetensors(const std::string& path, const ModelConfig& config,
                           const std::vector<ParamRef>& params, const Backend& backend,
                           bool export_grads) {
  SafetensorsWriter writer;
  for (HfTensor& t : hf_tensors(config, params, backend, export_grads))
    writer.add_f32(t.name, t.shape, std::move(t.values));
  // transformers refuses safetensors files without a "format" entry.
  writer.write(path, {{"format", "pt"}, {"producer", "qianjun"}});
}

}  // namespace qj
