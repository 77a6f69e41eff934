/* cloudboot loader: the PE/COFF check behind cb_is_efi_image (pure C, see linuxboot.h). */
#include "libc.h"
#include "linuxboot.h"

/* The machine this build loads kernels for.  CB_TEST_NATIVE_MACHINE lets the host tests
 * build the check as another architecture's (tests/unit/test_loader_c.py). */
#if defined(CB_TEST_NATIVE_MACHINE)
#define NATIVE_MACHINE CB_TEST_NATIVE_MACHINE
#elif defined(__x86_64__)
#define NATIVE_MACHINE 0x8664
#elif defined(__aarch64__)
#define NATIVE_MACHINE 0xaa64
#elif defined(__arm__)
/* ARM Thumb mixed: what EDK2 loads on 32-bit ARM and what the armmp zImage stub carries. */
#define NATIVE_MACHINE 0x01c2
#else
#error "unsupported architecture"
#endif
/* A 32-bit machine's images carry a PE32 optional header (0x10b), a 64-bit one's PE32+. */
#define NATIVE_MAGIC (NATIVE_MACHINE == 0x01c2 || NATIVE_MACHINE == 0x014c ? 0x10b : 0x20b)

static UINT16 rd16(const UINT8 *p) { return (UINT16)(p[0] | p[1] << 8); }
static UINT32 rd32(const UINT8 *p) {
    return (UINT32)p[0] | (UINT32)p[1] << 8 | (UINT32)p[2] << 16 | (UINT32)p[3] << 24;
}

UINT16 cb_native_machine(void) {
    return NATIVE_MACHINE;
}

int cb_is_efi_image(const void *buf, UINTN size, UINT16 *machine) {
    const UINT8 *p = buf;
    if (machine)
        *machine = 0;
    if (!p || size < 0x40 || p[0] != 'M' || p[1] != 'Z')
        return 0;
    UINT32 pe = rd32(p + 0x3c);
    if (pe > size || size - pe < 24 + 2 || memcmp(p + pe, "PE\0\0", 4) != 0)
        return 0;
    UINT16 m = rd16(p + pe + 4);
    if (machine)
        *machine = m;
    UINT16 opt_size = rd16(p + pe + 20);
    if (opt_size < 2 || rd16(p + pe + 24) != NATIVE_MAGIC) /* PE32+, or PE32 on armv7 */
        return 0;
    return m == cb_native_machine();
}
