/* cloudboot loader: vendor variables (see vars.h). */
#include "vars.h"
#include "fw.h"
#include "libc.h"
#include "ucs2.h"

EFI_STATUS cb_var_get_text(const CHAR16 *name, char *out, UINTN cap) {
    UINT8 data[1024];
    UINTN size = sizeof(data);
    UINT32 attrs = 0;
    EFI_STATUS st = cb_rt->GetVariable((CHAR16 *)name, &cb_guid_vendor, &attrs, &size, data);
    if (st == EFI_BUFFER_TOO_SMALL)
        return EFI_COMPROMISED_DATA; /* over 1 KiB is not a target or a command line */
    if (EFI_ERROR(st))
        return st;
    int r = cb_var_text_decode(data, size, out, cap);
    if (r == -2)
        return EFI_BUFFER_TOO_SMALL;
    if (r != 0)
        return EFI_COMPROMISED_DATA;
    return EFI_SUCCESS;
}

EFI_STATUS cb_mark(const char *text) {
    return cb_rt->SetVariable(u"CloudBootMark", &cb_guid_vendor,
                              EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS |
                                  EFI_VARIABLE_RUNTIME_ACCESS,
                              strlen(text), (void *)text);
}
