/* cloudboot loader: UCS-2 <-> UTF-8 (see ucs2.h). */
#include "ucs2.h"
#include "libc.h"

UINTN ucs2_len(const CHAR16 *s) {
    UINTN n = 0;
    while (s[n])
        n++;
    return n;
}

UINTN ucs2_from_utf8(CHAR16 *dst, UINTN cap, const char *src, UINTN len) {
    const UINT8 *s = (const UINT8 *)src;
    UINTN i = 0, n = 0;
    while (i < len && s[i]) {
        UINT32 c = s[i];
        UINTN extra = 0;
        if (c < 0x80) {
            extra = 0;
        } else if ((c & 0xe0) == 0xc0) {
            extra = 1;
            c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2;
            c &= 0x0f;
        } else {
            return CB_UCS2_ERROR; /* 4-byte sequences are beyond UCS-2 */
        }
        if (i + extra >= len + (extra ? 0 : 1))
            return CB_UCS2_ERROR;
        for (UINTN k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return CB_UCS2_ERROR;
            c = (c << 6) | (s[i + k] & 0x3f);
        }
        if ((extra == 1 && c < 0x80) || (extra == 2 && c < 0x800) ||
            (c >= 0xd800 && c <= 0xdfff))
            return CB_UCS2_ERROR; /* overlong or a surrogate */
        if (n + 1 >= cap)
            return CB_UCS2_ERROR;
        dst[n++] = (CHAR16)c;
        i += extra + 1;
    }
    if (!cap)
        return CB_UCS2_ERROR;
    dst[n] = 0;
    return n;
}

UINTN ucs2_to_utf8(char *dst, UINTN cap, const CHAR16 *src, UINTN len) {
    UINTN n = 0;
    for (UINTN i = 0; i < len && src[i]; i++) {
        UINT32 c = src[i];
        UINT8 b[3];
        UINTN k;
        if (c >= 0xd800 && c <= 0xdfff)
            return CB_UCS2_ERROR;
        if (c < 0x80) {
            b[0] = (UINT8)c;
            k = 1;
        } else if (c < 0x800) {
            b[0] = (UINT8)(0xc0 | (c >> 6));
            b[1] = (UINT8)(0x80 | (c & 0x3f));
            k = 2;
        } else {
            b[0] = (UINT8)(0xe0 | (c >> 12));
            b[1] = (UINT8)(0x80 | ((c >> 6) & 0x3f));
            b[2] = (UINT8)(0x80 | (c & 0x3f));
            k = 3;
        }
        if (n + k + 1 > cap)
            return CB_UCS2_ERROR;
        memcpy(dst + n, b, k);
        n += k;
    }
    if (!cap)
        return CB_UCS2_ERROR;
    dst[n] = 0;
    return n;
}

CHAR16 *ucs2_dup_ascii(const char *s) {
    UINTN n = strlen(s);
    CHAR16 *d = cb_alloc((n + 1) * sizeof(CHAR16));
    if (!d)
        return NULL;
    for (UINTN i = 0; i <= n; i++)
        d[i] = (CHAR16)(UINT8)s[i];
    return d;
}

static int looks_ucs2(const UINT8 *data, UINTN size) {
    if (size < 2 || size % 2)
        return 0;
    for (UINTN i = 1; i < size; i += 2)
        if (data[i] != 0)
            return 0;
    return 1;
}

int cb_var_text_decode(const UINT8 *data, UINTN size, char *out, UINTN cap) {
    UINTN n;
    if (looks_ucs2(data, size)) {
        CHAR16 tmp[512];
        UINTN chars = size / 2;
        if (chars > 511)
            return -2;
        memcpy(tmp, data, size);
        while (chars && tmp[chars - 1] == 0)
            chars--;
        tmp[chars] = 0;
        n = ucs2_to_utf8(out, cap, tmp, chars);
        if (n == CB_UCS2_ERROR)
            return -2;
    } else {
        while (size && data[size - 1] == 0)
            size--;
        if (size + 1 > cap)
            return -2;
        for (UINTN i = 0; i < size; i++)
            if (data[i] == 0)
                return -1;
        CHAR16 check[512];
        if (size > 511 || ucs2_from_utf8(check, 512, (const char *)data, size) == CB_UCS2_ERROR)
            return -1;
        memcpy(out, data, size);
        out[size] = 0;
        n = size;
    }
    if (n == 0)
        return -1;
    for (UINTN i = 0; i < n; i++)
        if ((UINT8)out[i] < 0x20 || out[i] == 0x7f)
            return -1;
    return 0;
}
