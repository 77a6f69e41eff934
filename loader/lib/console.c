/* cloudboot loader: console output (see console.h). */
#include "console.h"
#include "fw.h"
#include "libc.h"

typedef struct {
    char *buf;
    UINTN size, len;
} out_t;

static void put(out_t *o, char c) {
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void put_str(out_t *o, const char *s) {
    while (*s)
        put(o, *s++);
}

static void put_num(out_t *o, UINT64 v, unsigned base, int neg) {
    char tmp[24];
    int n = 0;
    if (neg)
        put(o, '-');
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (n)
        put(o, tmp[--n]);
}

static const struct {
    EFI_STATUS code;
    const char *name;
} names[] = {
    {EFI_SUCCESS, "EFI_SUCCESS"},
    {EFI_LOAD_ERROR, "EFI_LOAD_ERROR"},
    {EFI_INVALID_PARAMETER, "EFI_INVALID_PARAMETER"},
    {EFI_UNSUPPORTED, "EFI_UNSUPPORTED"},
    {EFI_BAD_BUFFER_SIZE, "EFI_BAD_BUFFER_SIZE"},
    {EFI_BUFFER_TOO_SMALL, "EFI_BUFFER_TOO_SMALL"},
    {EFI_NOT_READY, "EFI_NOT_READY"},
    {EFI_DEVICE_ERROR, "EFI_DEVICE_ERROR"},
    {EFI_WRITE_PROTECTED, "EFI_WRITE_PROTECTED"},
    {EFI_OUT_OF_RESOURCES, "EFI_OUT_OF_RESOURCES"},
    {EFI_VOLUME_CORRUPTED, "EFI_VOLUME_CORRUPTED"},
    {EFI_NO_MEDIA, "EFI_NO_MEDIA"},
    {EFI_NOT_FOUND, "EFI_NOT_FOUND"},
    {EFI_ACCESS_DENIED, "EFI_ACCESS_DENIED"},
    {EFI_NO_RESPONSE, "EFI_NO_RESPONSE"},
    {EFI_TIMEOUT, "EFI_TIMEOUT"},
    {EFI_NOT_STARTED, "EFI_NOT_STARTED"},
    {EFI_ABORTED, "EFI_ABORTED"},
    {EFI_PROTOCOL_ERROR, "EFI_PROTOCOL_ERROR"},
    {EFI_SECURITY_VIOLATION, "EFI_SECURITY_VIOLATION"},
    {EFI_CRC_ERROR, "EFI_CRC_ERROR"},
    {EFI_END_OF_FILE, "EFI_END_OF_FILE"},
    {EFI_COMPROMISED_DATA, "EFI_COMPROMISED_DATA"},
    {EFI_HTTP_ERROR, "EFI_HTTP_ERROR"},
};

const char *cb_status_name(EFI_STATUS status) {
    static char other[40];
    for (UINTN i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].code == status)
            return names[i].name;
    cb_snprintf(other, sizeof(other), "EFI status 0x%lx", (UINT64)status);
    return other;
}

UINTN cb_vsnprintf(char *buf, UINTN size, const char *fmt, va_list ap) {
    out_t o = {buf, size, 0};
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(&o, *fmt);
            continue;
        }
        fmt++;
        int lng = 0;
        while (*fmt == 'l') {
            lng = 1;
            fmt++;
        }
        switch (*fmt) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            put_str(&o, s ? s : "(null)");
            break;
        }
        case 'S': {
            const CHAR16 *s = va_arg(ap, const CHAR16 *);
            if (!s)
                s = u"(null)";
            for (; *s; s++)
                put(&o, *s < 0x80 ? (char)*s : '?');
            break;
        }
        case 'c':
            put(&o, (char)va_arg(ap, int));
            break;
        case 'd': {
            INT64 v = lng ? va_arg(ap, INT64) : va_arg(ap, int);
            put_num(&o, v < 0 ? (UINT64)-v : (UINT64)v, 10, v < 0);
            break;
        }
        case 'u':
            put_num(&o, lng ? va_arg(ap, UINT64) : va_arg(ap, unsigned), 10, 0);
            break;
        case 'x':
            put_num(&o, lng ? va_arg(ap, UINT64) : va_arg(ap, unsigned), 16, 0);
            break;
        case 'r':
            put_str(&o, cb_status_name(va_arg(ap, EFI_STATUS)));
            break;
        case '%':
            put(&o, '%');
            break;
        case 0:
            fmt--;
            break;
        default:
            put(&o, '%');
            put(&o, *fmt);
        }
    }
    if (size)
        buf[o.len < size ? o.len : size - 1] = 0;
    return o.len;
}

UINTN cb_snprintf(char *buf, UINTN size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    UINTN n = cb_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

static void out_ascii(const char *s) {
    CHAR16 chunk[130];
    UINTN n = 0;
    if (!cb_st || !cb_st->ConOut)
        return;
    for (; *s; s++) {
        if (*s == '\n')
            chunk[n++] = '\r';
        chunk[n++] = (CHAR16)(UINT8)*s;
        if (n >= 126) {
            chunk[n] = 0;
            cb_st->ConOut->OutputString(cb_st->ConOut, chunk);
            n = 0;
        }
    }
    chunk[n] = 0;
    if (n)
        cb_st->ConOut->OutputString(cb_st->ConOut, chunk);
}

static void vlog(const char *prefix, const char *fmt, va_list ap, const char *suffix) {
    char line[768];
    UINTN n = cb_strlcpy(line, prefix, sizeof(line));
    cb_vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    cb_strlcat(line, suffix, sizeof(line));
    cb_strlcat(line, "\n", sizeof(line));
    out_ascii(line);
}

void cb_printf(const char *fmt, ...) {
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    cb_vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    out_ascii(line);
}

void cb_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog("cloudboot-loader: ", fmt, ap, "");
    va_end(ap);
}

EFI_STATUS cb_fail(EFI_STATUS status, const char *fmt, ...) {
    char suffix[64];
    va_list ap;
    cb_snprintf(suffix, sizeof(suffix), " (%r)", status);
    va_start(ap, fmt);
    vlog("cloudboot-loader: error: ", fmt, ap, suffix);
    va_end(ap);
    return status;
}

void cb_event(const char *phase) {
    cb_printf("CLOUDBOOT-EVENT {\"phase\":\"%s\",\"source\":\"loader\"}\n", phase);
}

EFI_STATUS cb_fatal(const char *category, EFI_STATUS status, const char *fmt, ...) {
    char msg[512], esc[600], suffix[64];
    va_list ap;
    va_start(ap, fmt);
    cb_vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cb_snprintf(suffix, sizeof(suffix), " (%r)", status);
    cb_strlcat(msg, suffix, sizeof(msg));
    cb_printf("cloudboot-loader: error: %s\n", msg);
    UINTN o = 0;
    for (const char *p = msg; *p && o + 3 < sizeof(esc); p++) {
        if (*p == '"' || *p == '\\')
            esc[o++] = '\\';
        esc[o++] = *p;
    }
    esc[o] = 0;
    cb_printf("CLOUDBOOT-EVENT {\"phase\":\"fatal\",\"category\":\"%s\",\"message\":\"%s\","
              "\"source\":\"loader\"}\n",
              category, esc);
    return status;
}
