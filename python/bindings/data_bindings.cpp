// Data: GPT-2's tokenizer, the indexed dataset reader (sequences as numpy views
// of the memory map, no copy) and qj-prep's text-to-dataset conversion.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "bindings.h"
#include "data/gpt2_tokenizer.h"
#include "data/indexed_dataset.h"
#include "data/text_to_dataset.h"
#include "train/text_sampler.h"

namespace py = pybind11;

namespace qj::python {

namespace {

py::dtype numpy_dtype(TokenDtype dtype) {
  return dtype == TokenDtype::Int32 ? py::dtype::of<int32_t>() : py::dtype::of<uint16_t>();
}

// Sequence i (negative: from the end) as a read-only array over the mapping;
// the array keeps the dataset alive.
py::array sequence(py::object self, py::ssize_t index) {
  const IndexedDataset& ds = self.cast<const IndexedDataset&>();
  const auto n = py::ssize_t(ds.num_sequences());
  if (index < 0) index += n;
  if (index < 0 || index >= n)
    throw py::index_error(ds.prefix() + ": sequence index out of range (the dataset holds " +
                          std::to_string(n) + ")");
  const auto length = py::ssize_t(ds.sequence_length(size_t(index)));
  const void* data = ds.sequence_data(size_t(index));
  py::array view(numpy_dtype(ds.dtype()), {length}, {}, data, self);
  py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return view;
}

py::dict prep(const std::vector<std::string>& inputs, const std::string& output, int threads,
              bool append_eod, const std::string& jsonl_errors, const std::string& encoder,
              const std::string& vocab) {
  TextToDatasetOptions options;
  options.inputs = inputs;
  options.output_prefix = output;
  options.threads = threads;
  options.append_end_of_text = append_eod;
  if (jsonl_errors == "fatal") options.jsonl_errors = JsonlErrors::Fatal;
  else if (jsonl_errors != "skip")
    throw Error("jsonl_errors must be 'skip' or 'fatal', got '" + jsonl_errors + "'");
  const TokenizerConfig defaults;
  options.encoder_json = encoder.empty() ? defaults.encoder : encoder;
  options.vocab_bpe = vocab.empty() ? defaults.vocab : vocab;
  if (threads < 1) throw Error("threads must be at least 1, got " + std::to_string(threads));
  std::vector<std::string> warnings;
  TextToDatasetCallbacks callbacks;
  callbacks.warn = [&](const std::string& message) { warnings.push_back(message); };
  TextToDatasetSummary summary;
  {
    py::gil_scoped_release nogil;
    summary = text_to_dataset(options, callbacks);
  }
  py::dict d;
  d["documents"] = summary.totals.documents;
  d["tokens"] = summary.totals.tokens;
  d["bytes"] = summary.totals.bytes_done;
  d["seconds"] = summary.totals.seconds;
  d["dtype"] = numpy_dtype(summary.dtype);
  d["skipped_lines"] = summary.skipped_lines;
  d["threads"] = summary.threads;
  d["warnings"] = warnings;
  return d;
}

}  // namespace

void bind_data(py::module_& m) {
  py::class_<Gpt2Tokenizer>(m, "Tokenizer", "GPT-2's byte-level BPE (qianjun.Tokenizer wraps it).")
      .def(py::init([](const std::string& encoder, const std::string& vocab) {
             py::gil_scoped_release nogil;
             return std::make_unique<Gpt2Tokenizer>(encoder, vocab);
           }),
           py::arg("encoder_json"), py::arg("vocab_bpe"))
      .def("encode",
           [](Gpt2Tokenizer& t, const std::string& text) {
             std::vector<int32_t> ids;
             {
               py::gil_scoped_release nogil;
               t.encode(text, ids);
             }
             return ids;
           },
           py::arg("text"))
      .def("decode_bytes",
           [](const Gpt2Tokenizer& t, const std::vector<int32_t>& ids) { return py::bytes(t.decode(ids)); },
           py::arg("ids"))
      .def_property_readonly("vocab_size", &Gpt2Tokenizer::vocab_size)
      .def_property_readonly("end_of_text", &Gpt2Tokenizer::end_of_text);

  py::class_<IndexedDataset>(m, "IndexedDataset", "A Megatron-LM indexed dataset (qianjun.IndexedDataset wraps it).")
      .def(py::init([](const std::string& prefix) {
             py::gil_scoped_release nogil;
             return std::make_unique<IndexedDataset>(prefix);
           }),
           py::arg("prefix"))
      .def("__len__", &IndexedDataset::num_sequences)
      .def("__getitem__", &sequence, py::arg("index"))
      .def_property_readonly("prefix", &IndexedDataset::prefix)
      .def_property_readonly("num_tokens", &IndexedDataset::num_tokens)
      .def_property_readonly("num_documents", &IndexedDataset::num_documents)
      .def_property_readonly("dtype", [](const IndexedDataset& ds) { return numpy_dtype(ds.dtype()); });

  py::class_<TextSampler>(m, "Sampler", "A model with trained weights that continues token ids (qianjun.Sampler wraps it).")
      .def(py::init([](const Config& config, const std::string& weights) {
             py::gil_scoped_release nogil;
             return std::make_unique<TextSampler>(config, weights);
           }),
           py::arg("config"), py::arg("weights"))
      .def("generate",
           [](TextSampler& sampler, std::vector<int32_t> ids, int tokens, double temperature, int top_k,
              uint64_t seed, size_t vocab_size) {
             const size_t prompt = ids.size();
             {
               py::gil_scoped_release nogil;
               sampler.generate(ids, SamplingOptions{tokens, temperature, top_k, seed}, vocab_size);
             }
             return std::vector<int32_t>(ids.begin() + ptrdiff_t(prompt), ids.end());
           },
           py::arg("ids"), py::arg("tokens"), py::arg("temperature"), py::arg("top_k"), py::arg("seed"),
           py::arg("vocab_size"));
  m.def("check_vocab_fits", &check_vocab_fits, py::arg("config"), py::arg("vocab_size"));

  m.def("prep", &prep, py::arg("inputs"), py::arg("output"), py::arg("threads"), py::arg("append_eod"),
        py::arg("jsonl_errors"), py::arg("encoder"), py::arg("vocab"));
}

}  // namespace qj::python
