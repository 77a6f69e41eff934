/* cloudboot loader: the few C library functions a freestanding UEFI program needs, plus the
 * pool/page allocator wrappers.  Pure C except cb_alloc/cb_free/cb_alloc_pages/cb_free_pages,
 * which the firmware build implements with boot services and the host tests with malloc. */
#ifndef CLOUDBOOT_LIBC_H
#define CLOUDBOOT_LIBC_H
#include "../include/efi.h"

/* Standard semantics (the compiler may also emit calls to memcpy/memset itself). */
void *memcpy(void *dst, const void *src, UINTN n);
void *memmove(void *dst, const void *src, UINTN n);
void *memset(void *dst, int c, UINTN n);
int memcmp(const void *a, const void *b, UINTN n);
UINTN strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, UINTN n);

/* 1 if s starts with prefix. */
int cb_startswith(const char *s, const char *prefix);
/* Copy at most size-1 bytes of src into dst and NUL-terminate; returns strlen(src). */
UINTN cb_strlcpy(char *dst, const char *src, UINTN size);
/* Append src to the NUL-terminated dst (capacity size); returns the length it tried to make. */
UINTN cb_strlcat(char *dst, const char *src, UINTN size);
/* Lower-case hex of n bytes into out (2n+1 chars). */
void cb_hex(char *out, const UINT8 *bytes, UINTN n);
/* dpkg's version order (verrevcmp on upstream-revision strings): <0, 0, >0.  Digits compare
 * numerically, '~' sorts before everything (even the end), letters before other characters.
 * Used to pick the newest /boot/vmlinuz-<version>. */
int cb_version_cmp(const char *a, const char *b);

/* Pool memory (EfiLoaderData).  NULL when out of memory. */
void *cb_alloc(UINTN size);
void cb_free(void *p);
/* Page-granular memory for big buffers (kernel, initrd): NULL when out of memory. */
void *cb_alloc_pages(UINTN size);
void cb_free_pages(void *p, UINTN size);

#endif
