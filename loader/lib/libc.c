/* cloudboot loader: freestanding C library subset (see libc.h). */
#include "libc.h"

void *memcpy(void *dst, const void *src, UINTN n) {
    UINT8 *d = dst;
    const UINT8 *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, UINTN n) {
    UINT8 *d = dst;
    const UINT8 *s = src;
    if (d < s || d >= s + n) {
        while (n--)
            *d++ = *s++;
    } else {
        while (n--)
            d[n] = s[n];
    }
    return dst;
}

void *memset(void *dst, int c, UINTN n) {
    UINT8 *d = dst;
    while (n--)
        *d++ = (UINT8)c;
    return dst;
}

int memcmp(const void *a, const void *b, UINTN n) {
    const UINT8 *x = a, *y = b;
    for (UINTN i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

UINTN strlen(const char *s) {
    UINTN n = 0;
    while (s[n])
        n++;
    return n;
}

int strcmp(const char *a, const char *b) {
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return (int)(UINT8)*a - (int)(UINT8)*b;
}

int strncmp(const char *a, const char *b, UINTN n) {
    for (UINTN i = 0; i < n; i++) {
        if (a[i] != b[i] || !a[i])
            return (int)(UINT8)a[i] - (int)(UINT8)b[i];
    }
    return 0;
}

int cb_startswith(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

UINTN cb_strlcpy(char *dst, const char *src, UINTN size) {
    UINTN n = strlen(src);
    if (size) {
        UINTN c = n < size - 1 ? n : size - 1;
        memcpy(dst, src, c);
        dst[c] = 0;
    }
    return n;
}

UINTN cb_strlcat(char *dst, const char *src, UINTN size) {
    UINTN have = strlen(dst);
    if (have >= size)
        return have + strlen(src);
    return have + cb_strlcpy(dst + have, src, size - have);
}

void cb_hex(char *out, const UINT8 *bytes, UINTN n) {
    static const char digits[] = "0123456789abcdef";
    for (UINTN i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = 0;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* dpkg's character weight for the non-digit runs. */
static int order(char c) {
    if (is_digit(c))
        return 0;
    if (is_alpha(c))
        return c;
    if (c == '~')
        return -1;
    if (c)
        return c + 256;
    return 0;
}

int cb_version_cmp(const char *a, const char *b) {
    while (*a || *b) {
        int first_diff = 0;
        while ((*a && !is_digit(*a)) || (*b && !is_digit(*b))) {
            int ac = order(*a), bc = order(*b);
            if (ac != bc)
                return ac - bc;
            a++;
            b++;
        }
        while (*a == '0')
            a++;
        while (*b == '0')
            b++;
        while (is_digit(*a) && is_digit(*b)) {
            if (!first_diff)
                first_diff = *a - *b;
            a++;
            b++;
        }
        if (is_digit(*a))
            return 1;
        if (is_digit(*b))
            return -1;
        if (first_diff)
            return first_diff;
    }
    return 0;
}
