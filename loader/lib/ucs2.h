/* cloudboot loader: UCS-2 (UEFI's CHAR16 strings) <-> UTF-8.  Pure C, host-tested. */
#ifndef CLOUDBOOT_UCS2_H
#define CLOUDBOOT_UCS2_H
#include "../include/efi.h"

#define CB_UCS2_ERROR ((UINTN)-1)

/* Length in characters of a NUL-terminated CHAR16 string. */
UINTN ucs2_len(const CHAR16 *s);
/* UTF-8 (len bytes, stops early at a NUL) -> NUL-terminated UCS-2 in dst (cap characters,
 * NUL included).  Returns the characters written without the NUL, or CB_UCS2_ERROR for
 * invalid UTF-8, a code point above U+FFFF or too little room. */
UINTN ucs2_from_utf8(CHAR16 *dst, UINTN cap, const char *src, UINTN len);
/* UCS-2 (len characters, stops early at a NUL) -> NUL-terminated UTF-8 in dst (cap bytes).
 * Returns the bytes written without the NUL, or CB_UCS2_ERROR (surrogate, too little room). */
UINTN ucs2_to_utf8(char *dst, UINTN cap, const CHAR16 *src, UINTN len);
/* A NUL-terminated ASCII copy of s into a freshly cb_alloc'ed CHAR16 string (NULL on OOM). */
CHAR16 *ucs2_dup_ascii(const char *s);
/* Decode an EFI variable that holds text: UCS-2 (even length, every high byte 0 for the
 * ASCII it holds) or UTF-8, an optional trailing NUL.  Writes NUL-terminated UTF-8 to out.
 * Returns 0, or -1 when empty, not valid text, or it holds control characters (garbage),
 * or -2 when out is too small. */
int cb_var_text_decode(const UINT8 *data, UINTN size, char *out, UINTN cap);

#endif
