/* qj_device.h compiles as strict C99 (gcc -std=c99 -pedantic -Werror, the
 * ctest plugin_header_c99) and its layout rules hold at run time: every table
 * starts with abi_major, abi_minor, struct_size; every op's argument struct
 * starts with struct_size; the op ids follow the list. Exit 0 when they hold. */
#include <stdio.h>

#include "qianjun/plugin/qj_device.h"

#define EXPECT(cond)                                   \
  do {                                                 \
    if (!(cond)) {                                     \
      fprintf(stderr, "header_c99: failed: %s\n", #cond); \
      return 1;                                        \
    }                                                  \
  } while (0)

#define CHECK_ARGS_(name, tensors, params) \
  EXPECT(offsetof(qj_##name##_args, struct_size) == 0);
#define COUNT_(name, tensors, params) +1

int main(void) {
  EXPECT(offsetof(qj_device_plugin, abi_major) == 0);
  EXPECT(offsetof(qj_device_plugin, abi_minor) == 4);
  EXPECT(offsetof(qj_device_plugin, struct_size) == 8);
  EXPECT(offsetof(qj_host_table, abi_major) == 0);
  EXPECT(offsetof(qj_host_table, struct_size) == 8);
  EXPECT(offsetof(qj_device_properties, struct_size) == 0);
  QJ_DEVICE_OPS(CHECK_ARGS_, , )
  EXPECT(QJ_OP_COUNT == 0 QJ_DEVICE_OPS(COUNT_, , ));
  EXPECT(QJ_OP_fill == 0);
  EXPECT(QJ_DEVICE_PLUGIN_MIN_SIZE == offsetof(qj_device_plugin, fill));
  EXPECT(sizeof(qj_tensor) == 8 + 4 + 4 + 2 * 8 * QJ_MAX_DIMS);
  printf("qj_device.h: ABI %d.%d, %d ops, table %u bytes\n", QJ_DEVICE_ABI_MAJOR,
         QJ_DEVICE_ABI_MINOR, (int)QJ_OP_COUNT, (unsigned)sizeof(qj_device_plugin));
  return 0;
}
