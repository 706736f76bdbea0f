/*
 * qj_device.h: the versioned C ABI between Qianjun (the host) and a device
 * plugin (a shared library a vendor builds without Qianjun's C++ ABI).
 *
 * Pure C99; compiles as C++ too. No exceptions cross it: every call returns a
 * qj_status, and after a non-OK status the plugin's last_error() holds a
 * message for the calling thread.
 *
 * Versioning (the rules a plugin and the host keep):
 * - Every table starts with abi_major, abi_minor, struct_size (the plugin's
 *   sizeof of that table). Fields are only ever appended, so a newer minor
 *   is a longer struct; the host reads a field only when it lies inside
 *   struct_size, so a plugin built against an older minor keeps working, and
 *   a plugin built against a newer minor works with an older host (which
 *   ignores the tail).
 * - A new major changes the layout: its entry symbol gets a new name
 *   (qj_device_plugin_v2), and a host refuses a table whose abi_major it
 *   does not know, naming the plugin's path and both versions.
 * - Every op's arguments travel in one struct that starts with its own
 *   struct_size (the host's sizeof); a plugin reads only what lies inside it.
 *
 * Entry point: the plugin exports
 *     const qj_device_plugin* qj_device_plugin_v1(const qj_host_table* host);
 * called once after dlopen. It returns the plugin's table (static storage,
 * valid until dlclose) or NULL when it cannot start (its reason in the table-
 * less case goes through host->log before returning).
 */
#ifndef QIANJUN_PLUGIN_QJ_DEVICE_H
#define QIANJUN_PLUGIN_QJ_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QJ_DEVICE_ABI_MAJOR 1
#define QJ_DEVICE_ABI_MINOR 1
#define QJ_DEVICE_ENTRY_SYMBOL "qj_device_plugin_v1"

/* ---- status codes ---- */
typedef int32_t qj_status;
#define QJ_OK 0
#define QJ_ERR_INVALID_ARGUMENT 1 /* shapes, dtypes, a struct_size too small */
#define QJ_ERR_UNSUPPORTED 2      /* this op / dtype combination is not implemented */
#define QJ_ERR_OUT_OF_MEMORY 3
#define QJ_ERR_DEVICE 4           /* the device or its driver failed */
#define QJ_ERR_INTERNAL 5         /* anything else */

/* ---- element types (values fixed for major 1) ---- */
#define QJ_DTYPE_NONE (-1) /* an absent optional tensor, in op_supported() */
#define QJ_DTYPE_F32 0
#define QJ_DTYPE_BF16 1
#define QJ_DTYPE_I32 2
#define QJ_DTYPE_U16 3

/* ---- opaque handles, defined by the plugin ---- */
typedef struct qj_device_s* qj_device_t; /* one opened device */
typedef struct qj_stream_s* qj_stream_t; /* NULL: the device's default stream */
typedef struct qj_event_s* qj_event_t;

/* ---- tensor descriptor (layout fixed for major 1) ----
 * data NULL: an absent optional tensor (e.g. a layernorm without bias).
 * shape[i] for i < ndim; strides in elements; rows of a tensor the host passes
 * are contiguous (stride[ndim-1] == 1, stride[i] = stride[i+1] * shape[i+1]). */
#define QJ_MAX_DIMS 4
typedef struct qj_tensor {
  void* data;
  int32_t dtype;
  int32_t ndim;
  int64_t shape[QJ_MAX_DIMS];
  int64_t strides[QJ_MAX_DIMS];
} qj_tensor;

/* ---- the host table: what a plugin may call back ---- */
#define QJ_LOG_DEBUG 0
#define QJ_LOG_INFO 1
#define QJ_LOG_WARNING 2
#define QJ_LOG_ERROR 3
typedef struct qj_host_table {
  uint32_t abi_major, abi_minor, struct_size;
  /* Writes one line to the host's log, prefixed with the plugin's path. */
  void (*log)(int32_t level, const char* message);
  /* Ends the process with `message` (the host prints it, naming the plugin,
   * and exits non-zero). Never returns. For unrecoverable device states. */
  void (*abort)(const char* message);
} qj_host_table;

/* ---- device properties ---- */
#define QJ_CAP_BF16 (1u << 0)           /* ops accept bf16 tensors */
#define QJ_CAP_HOST_ADDRESSABLE (1u << 1) /* device pointers are host pointers */
#define QJ_CAP_ASYNC_STREAMS (1u << 2)  /* work on a stream runs after the call returns */
typedef struct qj_device_properties {
  uint32_t struct_size; /* set by the host before the call */
  char name[64];
  uint64_t total_memory;      /* bytes */
  uint64_t capabilities;      /* QJ_CAP_* bits */
  double peak_flops_fp32;     /* dense, for MFU; 0 when unknown */
  double peak_flops_bf16;
} qj_device_properties;

/*
 * ---- the op list ----
 * One entry per op of a training step: OP(name, tensors, params), the
 * arguments in the order the host's C++ op table (include/qianjun/backend.h,
 * where each op's semantics are documented) takes them. Tensors are T(name),
 * floating point (f32, or bf16 where backend.h allows it), or I(name), int32
 * (token ids, targets, row indices, group offsets); scalar parameters are
 * P(type, name), booleans as int32_t (0 or 1). QJ_DEVICE_OPS(OP, T, P) is the
 * same list with the I tensors passed to T. Everything below (argument
 * structs, op ids, table slots) and the host's adapters are generated from
 * this list: adding an op is one entry here (appended: op ids and table slots
 * are ABI). A tensor marked "may be absent" in backend.h arrives with data ==
 * NULL.
 */
#define QJ_DEVICE_OPS_TYPED(OP, T, I, P)                                                      \
  OP(fill, T(x), P(float, value))                                                             \
  OP(add, T(a) T(b) T(out), )                                                                 \
  OP(scale, T(x), P(float, alpha))                                                            \
  OP(copy, T(src) T(dst), )                                                                   \
  OP(matmul, T(a) T(b) T(c),                                                                  \
     P(int32_t, trans_a) P(int32_t, trans_b) P(float, alpha) P(float, beta))                  \
  OP(add_bias, T(y) T(bias), )                                                                \
  OP(bias_backward, T(dy) T(dbias), )                                                         \
  OP(layernorm_forward, T(x) T(w) T(b) T(y) T(mean) T(rstd), P(float, eps))                   \
  OP(layernorm_backward, T(dy) T(x) T(w) T(mean) T(rstd) T(dx) T(dw) T(db), )                 \
  OP(rmsnorm_forward, T(x) T(w) T(y) T(rstd), P(float, eps))                                  \
  OP(rmsnorm_backward, T(dy) T(x) T(w) T(rstd) T(dx) T(dw), )                                 \
  OP(gelu_forward, T(x) T(y), )                                                               \
  OP(gelu_backward, T(dy) T(x) T(dx), )                                                       \
  OP(swiglu_forward, T(h) T(y), )                                                             \
  OP(swiglu_backward, T(dy) T(h) T(dh), )                                                     \
  OP(rope_tables, T(cos) T(sin), P(float, theta))                                             \
  OP(rope_forward, T(qkv) T(cos) T(sin), P(int32_t, heads) P(int32_t, kv_heads))              \
  OP(rope_backward, T(dqkv) T(cos) T(sin), P(int32_t, heads) P(int32_t, kv_heads))            \
  OP(attention_forward, T(qkv) T(out) T(lse), P(int32_t, heads) P(int32_t, kv_heads))         \
  OP(attention_backward, T(dout) T(qkv) T(out) T(lse) T(dqkv),                                \
     P(int32_t, heads) P(int32_t, kv_heads))                                                  \
  OP(embedding_forward, I(tokens) T(wte) T(wpe) T(out),                                       \
     P(int32_t, seq_len) P(int64_t, vocab_start))                                             \
  OP(embedding_backward, T(dout) I(tokens) T(dwte) T(dwpe),                                   \
     P(int32_t, seq_len) P(int64_t, vocab_start))                                             \
  OP(cross_entropy_stats, T(logits) I(targets) T(stats),                                      \
     P(int32_t, vocab) P(int64_t, vocab_start) P(int32_t, ignore_index))                      \
  OP(cross_entropy_backward, T(logits) I(targets) T(lse),                                     \
     P(float, dloss) P(int32_t, vocab) P(int64_t, vocab_start) P(int32_t, ignore_index))      \
  OP(sum_squares, T(x) T(out), )                                                              \
  OP(adamw_update, T(param) T(grad) T(m) T(v),                                                \
     P(float, lr) P(float, beta1) P(float, beta2) P(float, eps) P(float, weight_decay)        \
     P(int32_t, step) P(float, grad_scale))                                                  \
  /* minor 1: mixture of experts (optional: a NULL slot, or a table built for */              \
  /* minor 0 that ends before them, means the op is missing) */                               \
  OP(gather_rows, T(src) I(index) T(weight) T(dst), )                                         \
  OP(combine_rows, T(src) I(pos) T(weight) T(out), )                                          \
  OP(row_dot, T(a) T(b) T(out), )                                                             \
  OP(grouped_matmul, T(a) T(b) I(offsets) T(c),                                               \
     P(int32_t, trans_b) P(float, alpha) P(float, beta))                                      \
  OP(grouped_matmul_wgrad, T(dy) T(x) I(offsets) T(dw), P(float, beta))
#define QJ_DEVICE_OPS(OP, T, P) QJ_DEVICE_OPS_TYPED(OP, T, T, P)

/* Argument structs: qj_<op>_args { struct_size; tensors...; params... }. */
#define QJ_ARGS_TENSOR_(n) qj_tensor n;
#define QJ_ARGS_PARAM_(type, n) type n;
#define QJ_ARGS_STRUCT_(name, tensors, params) \
  typedef struct qj_##name##_args {            \
    uint32_t struct_size;                      \
    tensors params                             \
  } qj_##name##_args;
QJ_DEVICE_OPS(QJ_ARGS_STRUCT_, QJ_ARGS_TENSOR_, QJ_ARGS_PARAM_)
#undef QJ_ARGS_STRUCT_
#undef QJ_ARGS_TENSOR_
#undef QJ_ARGS_PARAM_

/* Op ids for op_supported(): QJ_OP_<name>, in list order. */
#define QJ_OP_ID_(name, tensors, params) QJ_OP_##name,
typedef enum qj_op { QJ_DEVICE_OPS(QJ_OP_ID_, , ) QJ_OP_COUNT } qj_op;
#undef QJ_OP_ID_

/* ---- the plugin's table ---- */
#define QJ_OP_SLOT_(name, tensors, params) \
  qj_status (*name)(qj_device_t device, qj_stream_t stream, const qj_##name##_args* args);

typedef struct qj_device_plugin {
  uint32_t abi_major, abi_minor, struct_size;
  const char* name; /* short name for logs, e.g. "simdev" */

  /* Thread-local message of this thread's last non-OK status ("" if none). */
  const char* (*last_error)(void);

  /* -- devices -- */
  qj_status (*device_count)(int32_t* count);
  /* out->struct_size is set by the caller; the plugin fills what fits. */
  qj_status (*device_properties)(int32_t index, qj_device_properties* out);
  /* The host opens device (local rank % count), once per process. */
  qj_status (*device_open)(int32_t index, qj_device_t* out);
  qj_status (*device_close)(qj_device_t device);

  /* -- memory -- */
  qj_status (*mem_alloc)(qj_device_t device, uint64_t bytes, void** out);
  qj_status (*mem_free)(qj_device_t device, void* ptr);
  /* Page-locked host memory for fast copies (may be ordinary memory). */
  qj_status (*host_alloc)(qj_device_t device, uint64_t bytes, void** out);
  qj_status (*host_free)(qj_device_t device, void* ptr);
  /* Bytes still allocatable now (0: unknown). */
  qj_status (*mem_available)(qj_device_t device, uint64_t* bytes);

  /* -- streams and events: work on one stream runs in call order -- */
  qj_status (*stream_create)(qj_device_t device, qj_stream_t* out);
  qj_status (*stream_destroy)(qj_device_t device, qj_stream_t stream);
  qj_status (*stream_synchronize)(qj_device_t device, qj_stream_t stream);
  qj_status (*event_create)(qj_device_t device, qj_event_t* out);
  qj_status (*event_destroy)(qj_device_t device, qj_event_t event);
  qj_status (*event_record)(qj_device_t device, qj_event_t event, qj_stream_t stream);
  qj_status (*stream_wait_event)(qj_device_t device, qj_stream_t stream, qj_event_t event);
  qj_status (*event_synchronize)(qj_device_t device, qj_event_t event);

  /* -- copies and memset, asynchronous on `stream`: host buffers must stay
   *    valid until the stream is synchronized -- */
  qj_status (*copy_h2d)(qj_device_t device, qj_stream_t stream, void* dst, const void* src,
                        uint64_t bytes);
  qj_status (*copy_d2h)(qj_device_t device, qj_stream_t stream, void* dst, const void* src,
                        uint64_t bytes);
  qj_status (*copy_d2d)(qj_device_t device, qj_stream_t stream, void* dst, const void* src,
                        uint64_t bytes);
  qj_status (*memset_d)(qj_device_t device, qj_stream_t stream, void* dst, int32_t byte_value,
                        uint64_t bytes);

  /* -- capability: 1 when `op` runs with these tensor dtypes (one per tensor
   *    of the op, in list order; QJ_DTYPE_NONE for an absent one) and, when
   *    `args` is not NULL, these parameters; 0 otherwise. Asked before training.
   *    A NULL op slot means the op is missing altogether. -- */
  int32_t (*op_supported)(qj_device_t device, int32_t op, const int32_t* dtypes,
                          int32_t n_dtypes, const void* args);

  /* -- ops, asynchronous on `stream`, in QJ_DEVICE_OPS order -- */
  QJ_DEVICE_OPS(QJ_OP_SLOT_, , )
} qj_device_plugin;
#undef QJ_OP_SLOT_

/* The smallest struct_size the host accepts: everything before the ops. */
#define QJ_DEVICE_PLUGIN_MIN_SIZE offsetof(qj_device_plugin, fill)

typedef const qj_device_plugin* (*qj_device_plugin_entry_v1)(const qj_host_table* host);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* QIANJUN_PLUGIN_QJ_DEVICE_H */
