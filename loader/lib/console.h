/* cloudboot loader: console output on ConOut (OVMF/AAVMF mirror it to the serial port).
 *
 * Format directives (a small printf): %s char*, %S CHAR16*, %c char, %d int, %u unsigned,
 * %x unsigned hex, %lu / %lx / %ld UINT64 or UINTN (always cast to UINT64), %r EFI_STATUS
 * as its name ("EFI_NOT_FOUND"), %%.  '\n' becomes "\r\n". */
#ifndef CLOUDBOOT_CONSOLE_H
#define CLOUDBOOT_CONSOLE_H
#include "../include/efi.h"
#include <stdarg.h>

/* Format into buf (always NUL-terminated); returns the length it would have had. */
UINTN cb_vsnprintf(char *buf, UINTN size, const char *fmt, va_list ap);
UINTN cb_snprintf(char *buf, UINTN size, const char *fmt, ...);
/* Print formatted text as is. */
void cb_printf(const char *fmt, ...);
/* One line "cloudboot-loader: <text>" (newline added). */
void cb_log(const char *fmt, ...);
/* One line "cloudboot-loader: error: <text> (<status name>)"; returns status so a caller can
 * write `return cb_fail(st, "…")`.  Use it exactly once per failure, at the point that knows
 * what and where. */
EFI_STATUS cb_fail(EFI_STATUS status, const char *fmt, ...);
/* One lab event line `CLOUDBOOT-EVENT {"phase":"<phase>","source":"loader"}` (phases must be
 * in cloudboot/init/events.py PHASES: "loader-start", "loader-handoff"). */
void cb_event(const char *phase);
/* cb_fail's line, then `CLOUDBOOT-EVENT {"phase":"fatal","category":"<category>",
 * "message":"<text>","source":"loader"}` so the lab classifies the failure.  Categories are
 * DESIGN §5's: firmware, init-plan (variables/config), init-network, init-disk (no root,
 * file missing), handoff (LoadImage/StartImage), target-kernel (not an EFI image), lab.
 * Returns status. */
EFI_STATUS cb_fatal(const char *category, EFI_STATUS status, const char *fmt, ...);
/* The name of a status code ("EFI_SUCCESS", "EFI_NOT_FOUND", … or "EFI status 0x…"). */
const char *cb_status_name(EFI_STATUS status);

#endif
