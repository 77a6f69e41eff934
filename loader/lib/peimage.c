/* cloudboot loader: the PE/COFF check behind cb_is_efi_image (pure C, see linuxboot.h). */
#include "libc.h"
#include "linuxboot.h"

static UINT16 rd16(const UINT8 *p) { return (UINT16)(p[0] | p[1] << 8); }
static UINT32 rd32(const UINT8 *p) {
    return (UINT32)p[0] | (UINT32)p[1] << 8 | (UINT32)p[2] << 16 | (UINT32)p[3] << 24;
}

UINT16 cb_native_machine(void) {
#if defined(__x86_64__)
    return 0x8664;
#elif defined(__aarch64__)
    return 0xaa64;
#else
#error "unsupported architecture"
#endif
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
    if (opt_size < 2 || rd16(p + pe + 24) != 0x20b) /* PE32+ */
        return 0;
    return m == cb_native_machine();
}
