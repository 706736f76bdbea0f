/*
 * Small C plugins for the loader's tests (tests/unit/test_plugin_loader.cpp,
 * tests/python/test_plugin.py), one per QJ_TEST_PLUGIN mode. Written in C99 to
 * show the header is all a plugin needs.
 *   no_symbol  exports no entry symbol
 *   major2     qj_device_plugin_v1 returns a table that says ABI 2.0
 *   v2_only    exports qj_device_plugin_v2 only
 *   small      a table whose struct_size (16) is below the v1 minimum
 *   null       logs why and returns NULL
 *   abort      calls the host's abort() while starting
 *   partial    a working device (host memory, three of them) whose table ends after `fill`,
 *              which fails with QJ_ERR_DEVICE; the bytes after struct_size
 *              are junk the host must never read
 */
#include <stdlib.h>
#include <string.h>

#include "qianjun/plugin/qj_device.h"

#define EXPORT __attribute__((visibility("default")))

#define MODE_no_symbol 1
#define MODE_major2 2
#define MODE_v2_only 3
#define MODE_small 4
#define MODE_null 5
#define MODE_abort 6
#define MODE_partial 7
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define MODE CAT(MODE_, QJ_TEST_PLUGIN)

static const char* g_error = "";
static const char* last_error(void) { return g_error; }
static struct qj_device_s {
  int unused;
} g_device;

static qj_status device_count(int32_t* count) {
  *count = 3; /* a node with three devices: local rank r opens r % 3 */
  return QJ_OK;
}
static qj_status device_properties(int32_t index, qj_device_properties* out) {
  (void)index;
  strcpy(out->name, "test");
  out->total_memory = 1u << 20;
  out->capabilities = QJ_CAP_HOST_ADDRESSABLE;
  out->peak_flops_fp32 = 1e9;
  out->peak_flops_bf16 = 1e9;
  return QJ_OK;
}
static qj_status device_open(int32_t index, qj_device_t* out) {
  (void)index;
  *out = &g_device;
  return QJ_OK;
}
static qj_status device_close(qj_device_t d) {
  (void)d;
  return QJ_OK;
}
static qj_status mem_alloc(qj_device_t d, uint64_t bytes, void** out) {
  (void)d;
  *out = malloc(bytes ? bytes : 1);
  return *out ? QJ_OK : QJ_ERR_OUT_OF_MEMORY;
}
static qj_status mem_free(qj_device_t d, void* p) {
  (void)d;
  free(p);
  return QJ_OK;
}
static qj_status mem_available(qj_device_t d, uint64_t* bytes) {
  (void)d;
  *bytes = 0;
  return QJ_OK;
}
static qj_status handle_create(qj_device_t d, void** out) {
  (void)d;
  *out = malloc(1);
  return QJ_OK;
}
static qj_status stream_create(qj_device_t d, qj_stream_t* out) { return handle_create(d, (void**)out); }
static qj_status stream_destroy(qj_device_t d, qj_stream_t s) { return mem_free(d, s); }
static qj_status stream_synchronize(qj_device_t d, qj_stream_t s) {
  (void)d;
  (void)s;
  return QJ_OK;
}
static qj_status event_create(qj_device_t d, qj_event_t* out) { return handle_create(d, (void**)out); }
static qj_status event_destroy(qj_device_t d, qj_event_t e) { return mem_free(d, e); }
static qj_status event_record(qj_device_t d, qj_event_t e, qj_stream_t s) {
  (void)d;
  (void)e;
  (void)s;
  return QJ_OK;
}
static qj_status stream_wait_event(qj_device_t d, qj_stream_t s, qj_event_t e) {
  return event_record(d, e, s);
}
static qj_status event_synchronize(qj_device_t d, qj_event_t e) {
  (void)d;
  (void)e;
  return QJ_OK;
}
static qj_status copy(qj_device_t d, qj_stream_t s, void* dst, const void* src, uint64_t n) {
  (void)d;
  (void)s;
  if (n) memmove(dst, src, n);
  return QJ_OK;
}
static qj_status memset_d(qj_device_t d, qj_stream_t s, void* dst, int32_t v, uint64_t n) {
  (void)d;
  (void)s;
  memset(dst, v, n);
  return QJ_OK;
}
static int32_t op_supported(qj_device_t d, int32_t op, const int32_t* dtypes, int32_t n,
                            const void* args) {
  (void)d;
  (void)dtypes;
  (void)n;
  (void)args;
  return op == QJ_OP_fill;
}
static qj_status fill(qj_device_t d, qj_stream_t s, const qj_fill_args* args) {
  (void)d;
  (void)s;
  (void)args;
  g_error = "fill: simulated device fault";
  return QJ_ERR_DEVICE;
}

/* The table, then junk where a newer host would look for more entries. */
static struct {
  qj_device_plugin table;
  unsigned char junk[64];
} g_plugin;

static const qj_device_plugin* make_table(const qj_host_table* host) {
  qj_device_plugin* t = &g_plugin.table;
  (void)host;
  memset(&g_plugin, 0xA5, sizeof g_plugin);
  t->abi_major = QJ_DEVICE_ABI_MAJOR;
  t->abi_minor = 0;
  t->struct_size = (uint32_t)(offsetof(qj_device_plugin, fill) + sizeof t->fill);
  t->name = "test";
  t->last_error = last_error;
  t->device_count = device_count;
  t->device_properties = device_properties;
  t->device_open = device_open;
  t->device_close = device_close;
  t->mem_alloc = mem_alloc;
  t->mem_free = mem_free;
  t->host_alloc = mem_alloc;
  t->host_free = mem_free;
  t->mem_available = mem_available;
  t->stream_create = stream_create;
  t->stream_destroy = stream_destroy;
  t->stream_synchronize = stream_synchronize;
  t->event_create = event_create;
  t->event_destroy = event_destroy;
  t->event_record = event_record;
  t->stream_wait_event = stream_wait_event;
  t->event_synchronize = event_synchronize;
  t->copy_h2d = copy;
  t->copy_d2h = copy;
  t->copy_d2d = copy;
  t->memset_d = memset_d;
  t->op_supported = op_supported;
  t->fill = fill;
#if MODE == MODE_major2
  t->abi_major = 2;
  t->abi_minor = 3;
#elif MODE == MODE_small
  t->struct_size = 16;
#endif
  return t;
}

#if MODE == MODE_no_symbol
EXPORT int qj_not_a_plugin(void) { return (int)sizeof(make_table(NULL)->abi_major); }
#elif MODE == MODE_v2_only
EXPORT const qj_device_plugin* qj_device_plugin_v2(const qj_host_table* host) {
  return make_table(host);
}
#else
EXPORT const qj_device_plugin* qj_device_plugin_v1(const qj_host_table* host) {
#if MODE == MODE_null || MODE == MODE_abort
  (void)make_table; /* these modes never get as far as a table */
#endif
#if MODE == MODE_null
  host->log(QJ_LOG_ERROR, "no device found (simulated)");
  return NULL;
#elif MODE == MODE_abort
  host->abort("device firmware missing (simulated)");
  return NULL;
#else
  return make_table(host);
#endif
}
#endif
