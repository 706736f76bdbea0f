#include "backends/plugin/op_list.h"

namespace qj::plugin {

const char* op_name(int32_t op) {
  switch (op) {
#define QJ_NAME_(op, tensors, params) \
  case QJ_OP_##op:                    \
    return #op;
    QJ_DEVICE_OPS(QJ_NAME_, , )
#undef QJ_NAME_
    default: return "";
  }
}

int32_t to_c(DType dtype) {
  switch (dtype) {
    case DType::F32: return QJ_DTYPE_F32;
    case DType::BF16: return QJ_DTYPE_BF16;
    case DType::I32: return QJ_DTYPE_I32;
    case DType::U16: return QJ_DTYPE_U16;
  }
  return QJ_DTYPE_NONE;
}

qj_tensor to_c(const Tensor& t) {
  qj_tensor c{};
  c.data = t.data;
  c.dtype = t.data ? to_c(t.dtype) : QJ_DTYPE_NONE;
  c.ndim = t.ndim;
  for (int i = 0; i < t.ndim && i < QJ_MAX_DIMS; ++i) {
    c.shape[i] = t.shape[i];
    c.strides[i] = t.stride[i];
  }
  return c;
}

Tensor from_c(const qj_tensor& c, Device device) {
  Tensor t;
  t.data = c.data;
  t.device = device;
  if (!c.data) return t;
  switch (c.dtype) {
    case QJ_DTYPE_F32: t.dtype = DType::F32; break;
    case QJ_DTYPE_BF16: t.dtype = DType::BF16; break;
    case QJ_DTYPE_I32: t.dtype = DType::I32; break;
    case QJ_DTYPE_U16: t.dtype = DType::U16; break;
    default: throw Error("tensor descriptor with unknown dtype " + std::to_string(c.dtype));
  }
  if (c.ndim < 0 || c.ndim > Tensor::kMaxDims)
    throw Error("tensor descriptor with ndim " + std::to_string(c.ndim) + " (at most " +
                std::to_string(Tensor::kMaxDims) + ")");
  t.ndim = c.ndim;
  for (int i = 0; i < c.ndim; ++i) {
    if (c.shape[i] < 0) throw Error("tensor descriptor with a negative dimension");
    t.shape[i] = c.shape[i];
    t.stride[i] = c.strides[i];
  }
  return t;
}

const char* status_name(qj_status status) {
  switch (status) {
    case QJ_OK: return "QJ_OK";
    case QJ_ERR_INVALID_ARGUMENT: return "QJ_ERR_INVALID_ARGUMENT";
    case QJ_ERR_UNSUPPORTED: return "QJ_ERR_UNSUPPORTED";
    case QJ_ERR_OUT_OF_MEMORY: return "QJ_ERR_OUT_OF_MEMORY";
    case QJ_ERR_DEVICE: return "QJ_ERR_DEVICE";
    case QJ_ERR_INTERNAL: return "QJ_ERR_INTERNAL";
    default: return "unknown status";
  }
}

}  // namespace qj::plugin
