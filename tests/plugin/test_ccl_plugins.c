/*
 * Small C collective plugins for the loader's tests
 * (tests/unit/test_ccl_loader.cpp, tests/python/test_ccl_plugin.py), one per
 * QJ_TEST_CCL mode, in C99 like test_plugins.c:
 *   no_symbol  exports no entry symbol
 *   major2     qj_collective_plugin_v1 returns a table that says ABI 2.0
 *   v2_only    exports qj_collective_plugin_v2 only
 *   small      a table whose struct_size (16) is below the v1 minimum
 *   null       logs why and returns NULL
 *   empty      a table that leaves group_end empty
 *   init_fails a complete table whose init fails with QJ_ERR_DEVICE
 *   minor0     a device-memory table built for ABI 1.0: struct_size ends
 *              before device_plugin, whose slot past it holds a name the
 *              host must not read
 *   owned      a device-memory table (1.1) that belongs to device plugin
 *              "othersim"
 */
#include <string.h>

#include "qianjun/plugin/qj_collective.h"

#define EXPORT __attribute__((visibility("default")))

#define MODE_no_symbol 1
#define MODE_major2 2
#define MODE_v2_only 3
#define MODE_small 4
#define MODE_null 5
#define MODE_empty 6
#define MODE_init_fails 7
#define MODE_minor0 8
#define MODE_owned 9
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define MODE CAT(MODE_, QJ_TEST_CCL)

static const char* g_error = "";
static const char* last_error(void) { return g_error; }
static qj_status unique_id(void* out) {
  memset(out, 7, 8);
  return QJ_OK;
}
static qj_status init(const qj_ccl_init_args* args, qj_ccl_comm_t* out) {
  (void)args;
  (void)out;
  g_error = "test_ccl init_fails: the simulated network is down";
  return QJ_ERR_DEVICE;
}
static qj_status destroy(qj_ccl_comm_t c) {
  (void)c;
  return QJ_OK;
}
static int32_t supported(int32_t c, int32_t d, int32_t o) {
  (void)c;
  (void)d;
  (void)o;
  return 0;
}
static qj_status reduce(qj_ccl_comm_t c, const void* s, void* r, uint64_t n, int32_t d, int32_t o,
                        qj_stream_t st) {
  (void)c, (void)s, (void)r, (void)n, (void)d, (void)o, (void)st;
  return QJ_ERR_UNSUPPORTED;
}
static qj_status gather(qj_ccl_comm_t c, const void* s, void* r, uint64_t n, int32_t d,
                        qj_stream_t st) {
  (void)c, (void)s, (void)r, (void)n, (void)d, (void)st;
  return QJ_ERR_UNSUPPORTED;
}
static qj_status bcast(qj_ccl_comm_t c, const void* s, void* r, uint64_t n, int32_t d,
                       int32_t root, qj_stream_t st) {
  (void)c, (void)s, (void)r, (void)n, (void)d, (void)root, (void)st;
  return QJ_ERR_UNSUPPORTED;
}
static qj_status send(qj_ccl_comm_t c, const void* b, uint64_t n, int32_t d, int32_t p,
                      qj_stream_t st) {
  (void)c, (void)b, (void)n, (void)d, (void)p, (void)st;
  return QJ_ERR_UNSUPPORTED;
}
static qj_status recv(qj_ccl_comm_t c, void* b, uint64_t n, int32_t d, int32_t p, qj_stream_t st) {
  (void)c, (void)b, (void)n, (void)d, (void)p, (void)st;
  return QJ_ERR_UNSUPPORTED;
}
static qj_status group(void) { return QJ_OK; }
static qj_status abort_comm(qj_ccl_comm_t c) {
  (void)c;
  return QJ_OK;
}
static qj_status async_error(qj_ccl_comm_t c, qj_status* e) {
  (void)c;
  *e = QJ_OK;
  return QJ_OK;
}

static qj_collective_plugin g_table = {
    QJ_COLLECTIVE_ABI_MAJOR, QJ_COLLECTIVE_ABI_MINOR, sizeof(qj_collective_plugin), "test_ccl",
    QJ_CCL_MEMORY_HOST, 8, last_error, unique_id, init, destroy, supported, reduce, reduce,
    gather, bcast, send, recv, group, group, abort_comm, async_error, NULL};

#if MODE == MODE_no_symbol
/* A table behind another name: the host must not guess. */
EXPORT const qj_collective_plugin* qj_collective_table(void) { return &g_table; }
#elif MODE == MODE_v2_only
EXPORT const qj_collective_plugin* qj_collective_plugin_v2(const qj_host_table* host) {
  (void)host;
  return &g_table;
}
#else
EXPORT const qj_collective_plugin* qj_collective_plugin_v1(const qj_host_table* host) {
#if MODE == MODE_major2
  g_table.abi_major = 2;
  g_table.abi_minor = 0;
#elif MODE == MODE_small
  g_table.struct_size = 16;
#elif MODE == MODE_null
  host->log(QJ_LOG_ERROR, "test_ccl null: no network interface found");
  return NULL;
#elif MODE == MODE_empty
  g_table.group_end = NULL;
#elif MODE == MODE_minor0
  g_table.abi_minor = 0;
  g_table.struct_size = (uint32_t)QJ_COLLECTIVE_PLUGIN_MIN_SIZE;
  g_table.memory = QJ_CCL_MEMORY_DEVICE;
  g_table.device_plugin = "past struct_size";
#elif MODE == MODE_owned
  g_table.memory = QJ_CCL_MEMORY_DEVICE;
  g_table.device_plugin = "othersim";
#endif
  (void)host;
  return &g_table;
}
#endif
