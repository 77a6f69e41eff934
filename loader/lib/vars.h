/* cloudboot loader: our vendor variables (GUID c10ddb07-83c5-4d3e-9b76-1f4c0e7a3b8e). */
#ifndef CLOUDBOOT_VARS_H
#define CLOUDBOOT_VARS_H
#include "../include/efi.h"

/* Read variable `name` (e.g. u"CloudBootTarget") under our vendor GUID as text (UCS-2 or
 * UTF-8 in the store, see cb_var_text_decode) into out (cap bytes, NUL-terminated).
 * Returns EFI_SUCCESS, EFI_NOT_FOUND (not set), EFI_COMPROMISED_DATA (set but empty or not
 * text: "garbage"), EFI_BUFFER_TOO_SMALL, or the firmware's error.  Prints nothing. */
EFI_STATUS cb_var_get_text(const CHAR16 *name, char *out, UINTN cap);

/* Write CloudBootMark (non-volatile, boot service + runtime access) holding `text` as UTF-8
 * without NUL, e.g. "b:start" then "b:boot vmlinuz-6.1.0-28-cloud-amd64".  The host reads it
 * back from the vars file to prove the loader ran even without a serial console.  Returns
 * the firmware's status (callers log a failure and go on: the mark is evidence, not a need). */
EFI_STATUS cb_mark(const char *text);

#endif
