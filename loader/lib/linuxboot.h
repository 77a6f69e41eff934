/* cloudboot loader: start a Linux EFI-stub kernel (or any EFI application, e.g. a UKI) that
 * is already in memory.  Shared by Path B (local disks) and Path D (network).
 *
 * The initrd is handed over the way Linux ≥ 5.8 asks for it: a handle carrying the vendor
 * media device path LINUX_EFI_INITRD_MEDIA_GUID + End, with EFI_LOAD_FILE2_PROTOCOL whose
 * LoadFile copies the initrd bytes.  The command line goes into the started image's
 * LoadOptions (UCS-2, NUL-terminated; LoadOptionsSize counts bytes including the NUL).
 *
 * Typical use:
 *     if (!cb_is_efi_image(k, ksize, NULL))  -> refuse with a clear line
 *     st = cb_linux_boot(k, ksize, initrd, isize, u"root=UUID=… ro console=ttyS0");
 *     // only returns on failure, after printing one "cloudboot-loader: error: …" line
 *     return st;  // back to the firmware: never hang
 */
#ifndef CLOUDBOOT_LINUXBOOT_H
#define CLOUDBOOT_LINUXBOOT_H
#include "../include/efi.h"

/* 1 if buf holds a PE/COFF image (MZ header, "PE\0\0" at e_lfanew, a PE32+ optional header,
 * PE32 on armv7) for this loader's own machine (x86_64 0x8664 / aarch64 0xaa64 / armv7 0x01c2,
 * ARM Thumb mixed); 0 otherwise.  When machine is not NULL it receives the COFF Machine
 * field (0 when there is no PE header), so a caller can say "built for another
 * architecture".  Pure C, host-tested. */
int cb_is_efi_image(const void *buf, UINTN size, UINT16 *machine);

/* The COFF machine this loader was built for. */
UINT16 cb_native_machine(void);

/* Boot `kernel` (kernel_size bytes, a PE image in memory; the buffer may be freed by the
 * caller only if this returns) with `initrd` (may be NULL / 0: then no LoadFile2 handle is
 * published) and `cmdline` (UCS-2, NUL-terminated; NULL = no load options).
 * Steps: refuse a non-PE or foreign-arch kernel; publish the initrd; LoadImage from memory
 * (parent = our image, no device path); set LoadOptions; StartImage.
 * Prints CLOUDBOOT-EVENT loader-handoff just before StartImage.
 * Returns only when something failed or the image returned: a "cloudboot-loader: error: …"
 * line and a fatal event (category target-kernel or handoff) are already printed, the
 * initrd handle is uninstalled again, and the caller should return the status to the
 * firmware. */
EFI_STATUS cb_linux_boot(const void *kernel, UINTN kernel_size, const void *initrd,
                         UINTN initrd_size, const CHAR16 *cmdline);

#endif
