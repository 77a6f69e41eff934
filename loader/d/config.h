/* The embedded configuration of the Path D loader: a fixed-size block with a magic marker
 * in the binary's data, filled after compilation by cloudboot/loader/netconfig.py.
 *
 * Layout (little-endian, no padding; netconfig.py mirrors it and tests/unit checks both):
 *   0   magic[16]      "CLOUDBOOT-D-CFG1"
 *   16  u32 size       sizeof(cb_d_config)
 *   20  u32 flags      bit 0: filled in; bit 1: plain http (insecure)
 *   24  registry[128]  "host:port" (an IP literal always works; names as far as the
 *                      firmware's DNS goes)
 *   152 repository[256]
 *   408 reference[136] a tag or "sha256:<64 hex>"
 *   544 cmdline[2048]  the kernel command line ("" = the artifact's cmdline layer)
 *   2592               end
 * Every string is NUL-terminated within its field. */
#ifndef CB_D_CONFIG_H
#define CB_D_CONFIG_H

#include <stdint.h>

#define CB_D_MAGIC "CLOUDBOOT-D-CFG1"
#define CB_D_FLAG_FILLED 1u
#define CB_D_FLAG_INSECURE 2u

typedef struct {
    char magic[16];
    uint32_t size;
    uint32_t flags;
    char registry[128];
    char repository[256];
    char reference[136];
    char cmdline[2048];
} cb_d_config;

_Static_assert(sizeof(cb_d_config) == 2592, "cb_d_config layout changed: update netconfig.py");

/* The configuration, after checking it is filled in and every field is terminated; on a
 * problem err (128 bytes) says what and the result is NULL. */
const cb_d_config *cb_d_config_get(char *err, unsigned errcap);
/* For the host tests: check any block. */
int cb_d_config_check(const cb_d_config *c, char *err, unsigned errcap);

#endif
