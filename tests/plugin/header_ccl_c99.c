/* qj_collective.h compiles as strict C99 and as C++ (the ctests
 * plugin_ccl_header_c99 and plugin_ccl_header_cxx) and keeps its layout rule:
 * the table and the init arguments start with their sizes. Exit 0 when they hold. */
#include <stdio.h>

#include "qianjun/plugin/qj_collective.h"

#define EXPECT(cond)                                          \
  do {                                                        \
    if (!(cond)) {                                            \
      fprintf(stderr, "header_ccl_c99: failed: %s\n", #cond); \
      return 1;                                               \
    }                                                         \
  } while (0)

int main(void) {
  EXPECT(offsetof(qj_collective_plugin, abi_major) == 0);
  EXPECT(offsetof(qj_collective_plugin, abi_minor) == 4);
  EXPECT(offsetof(qj_collective_plugin, struct_size) == 8);
  EXPECT(offsetof(qj_ccl_init_args, struct_size) == 0);
  /* 1.0 ends before device_plugin, the field appended in 1.1. */
  EXPECT(QJ_COLLECTIVE_PLUGIN_MIN_SIZE == offsetof(qj_collective_plugin, device_plugin));
  EXPECT(offsetof(qj_collective_plugin, device_plugin) + sizeof(const char*) <= sizeof(qj_collective_plugin));
  EXPECT(QJ_CCL_COLLECTIVE_COUNT == QJ_CCL_RECV + 1);
  return 0;
}
