#include "json.h"

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static size_t skip_ws(const char *p, size_t i, size_t n)
{
    while (i < n && is_ws(p[i]))
        i++;
    return i;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Skip the string starting at p[i] == '"'; *end = index after the closing quote. */
static int skip_string(const char *p, size_t i, size_t n, size_t *end)
{
    i++;
    while (i < n) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"') {
            *end = i + 1;
            return CB_JSON_OK;
        }
        if (c < 0x20)
            return CB_JSON_SYNTAX;
        if (c == '\\') {
            if (i + 1 >= n)
                return CB_JSON_SYNTAX;
            char e = p[i + 1];
            if (e == 'u') {
                if (i + 5 >= n)
                    return CB_JSON_SYNTAX;
                for (int k = 2; k < 6; k++)
                    if (hexval(p[i + k]) < 0)
                        return CB_JSON_SYNTAX;
                i += 6;
                continue;
            }
            if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' &&
                e != 'r' && e != 't')
                return CB_JSON_SYNTAX;
            i += 2;
            continue;
        }
        i++;
    }
    return CB_JSON_SYNTAX;
}

static int skip_number(const char *p, size_t i, size_t n, size_t *end)
{
    if (i < n && p[i] == '-')
        i++;
    if (i >= n || p[i] < '0' || p[i] > '9')
        return CB_JSON_SYNTAX;
    if (p[i] == '0')
        i++;
    else
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
    if (i < n && p[i] == '.') {
        i++;
        if (i >= n || p[i] < '0' || p[i] > '9')
            return CB_JSON_SYNTAX;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= n || p[i] < '0' || p[i] > '9')
            return CB_JSON_SYNTAX;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
    }
    *end = i;
    return CB_JSON_OK;
}

static int skip_lit(const char *p, size_t i, size_t n, const char *lit, size_t *end)
{
    while (*lit) {
        if (i >= n || p[i] != *lit)
            return CB_JSON_SYNTAX;
        i++;
        lit++;
    }
    *end = i;
    return CB_JSON_OK;
}

/* Skip one value starting at p[i] (no leading whitespace); iterative with a depth stack. */
static int skip_value(const char *p, size_t i, size_t n, size_t *end)
{
    char stack[CB_JSON_MAX_DEPTH];
    int depth = 0;
    int rc;
    for (;;) {
        /* expect a value at i */
        i = skip_ws(p, i, n);
        if (i >= n)
            return CB_JSON_SYNTAX;
        char c = p[i];
        if (c == '{' || c == '[') {
            if (depth == CB_JSON_MAX_DEPTH)
                return CB_JSON_RANGE;
            stack[depth++] = c;
            i = skip_ws(p, i + 1, n);
            if (i < n && p[i] == (c == '{' ? '}' : ']')) {
                depth--;
                i++;
                goto after_value;
            }
            if (c == '{')
                goto object_key;
            continue;
        } else if (c == '"') {
            rc = skip_string(p, i, n, &i);
        } else if (c == 't') {
            rc = skip_lit(p, i, n, "true", &i);
        } else if (c == 'f') {
            rc = skip_lit(p, i, n, "false", &i);
        } else if (c == 'n') {
            rc = skip_lit(p, i, n, "null", &i);
        } else {
            rc = skip_number(p, i, n, &i);
        }
        if (rc)
            return rc;
    after_value:
        for (;;) {
            if (depth == 0) {
                *end = i;
                return CB_JSON_OK;
            }
            i = skip_ws(p, i, n);
            if (i >= n)
                return CB_JSON_SYNTAX;
            char top = stack[depth - 1];
            if (p[i] == ',') {
                i++;
                if (top == '{')
                    goto object_key;
                break; /* next array element */
            }
            if (p[i] == (top == '{' ? '}' : ']')) {
                depth--;
                i++;
                continue;
            }
            return CB_JSON_SYNTAX;
        }
        continue;
    object_key:
        i = skip_ws(p, i, n);
        if (i >= n || p[i] != '"')
            return CB_JSON_SYNTAX;
        rc = skip_string(p, i, n, &i);
        if (rc)
            return rc;
        i = skip_ws(p, i, n);
        if (i >= n || p[i] != ':')
            return CB_JSON_SYNTAX;
        i++;
    }
}

int cb_json_parse(const char *text, size_t len, cb_json *out)
{
    size_t i = skip_ws(text, 0, len), end;
    int rc = skip_value(text, i, len, &end);
    if (rc)
        return rc;
    if (skip_ws(text, end, len) != len)
        return CB_JSON_SYNTAX;
    out->p = text + i;
    out->n = end - i;
    return CB_JSON_OK;
}

cb_json_type cb_json_typeof(cb_json v)
{
    if (v.n == 0)
        return CB_JSON_NONE;
    switch (v.p[0]) {
    case '{': return CB_JSON_OBJECT;
    case '[': return CB_JSON_ARRAY;
    case '"': return CB_JSON_STRING;
    case 't': return CB_JSON_TRUE;
    case 'f': return CB_JSON_FALSE;
    case 'n': return CB_JSON_NULL;
    default: return CB_JSON_NUMBER;
    }
}

/* Decode the string at v (v.p[0] == '"') into out; cap 0 = only compare mode via cmp. */
static int decode(cb_json v, char *out, size_t cap, const char *cmp)
{
    size_t end;
    if (cb_json_typeof(v) != CB_JSON_STRING)
        return CB_JSON_TYPE;
    if (skip_string(v.p, 0, v.n, &end))
        return CB_JSON_SYNTAX;
    size_t o = 0;
    for (size_t i = 1; i + 1 < end;) {
        char buf[4];
        size_t bn = 1;
        char c = v.p[i];
        if (c != '\\') {
            buf[0] = c;
            i++;
        } else {
            char e = v.p[i + 1];
            i += 2;
            switch (e) {
            case 'b': buf[0] = '\b'; break;
            case 'f': buf[0] = '\f'; break;
            case 'n': buf[0] = '\n'; break;
            case 'r': buf[0] = '\r'; break;
            case 't': buf[0] = '\t'; break;
            case 'u': {
                unsigned u = 0;
                for (int k = 0; k < 4; k++)
                    u = u * 16 + (unsigned)hexval(v.p[i + k]);
                i += 4;
                if (u < 0x80) {
                    buf[0] = (char)u;
                } else if (u < 0x800) {
                    buf[0] = (char)(0xc0 | (u >> 6));
                    buf[1] = (char)(0x80 | (u & 0x3f));
                    bn = 2;
                } else {
                    /* surrogates are passed through as 3-byte sequences; OCI fields are ASCII */
                    buf[0] = (char)(0xe0 | (u >> 12));
                    buf[1] = (char)(0x80 | ((u >> 6) & 0x3f));
                    buf[2] = (char)(0x80 | (u & 0x3f));
                    bn = 3;
                }
                break;
            }
            default: buf[0] = e; break;
            }
        }
        for (size_t k = 0; k < bn; k++) {
            if (cmp) {
                if (cmp[o] != buf[k])
                    return CB_JSON_MISSING;
            } else {
                if (o + 1 >= cap)
                    return CB_JSON_RANGE;
                out[o] = buf[k];
            }
            o++;
        }
    }
    if (cmp)
        return cmp[o] == 0 ? CB_JSON_OK : CB_JSON_MISSING;
    if (cap == 0)
        return CB_JSON_RANGE;
    out[o] = 0;
    return CB_JSON_OK;
}

int cb_json_str(cb_json v, char *out, size_t cap) { return decode(v, out, cap, 0); }

int cb_json_str_eq(cb_json v, const char *s) { return decode(v, 0, 0, s) == CB_JSON_OK; }

int cb_json_get(cb_json obj, const char *key, cb_json *out)
{
    if (cb_json_typeof(obj) != CB_JSON_OBJECT)
        return CB_JSON_TYPE;
    const char *p = obj.p;
    size_t n = obj.n, i = skip_ws(p, 1, n);
    int found = 0;
    if (i < n && p[i] == '}')
        return CB_JSON_MISSING;
    while (i < n) {
        if (p[i] != '"')
            return CB_JSON_SYNTAX;
        size_t kend, vstart, vend;
        if (skip_string(p, i, n, &kend))
            return CB_JSON_SYNTAX;
        cb_json k = {p + i, kend - i};
        i = skip_ws(p, kend, n);
        if (i >= n || p[i] != ':')
            return CB_JSON_SYNTAX;
        vstart = skip_ws(p, i + 1, n);
        int rc = skip_value(p, vstart, n, &vend);
        if (rc)
            return rc;
        if (cb_json_str_eq(k, key)) {
            out->p = p + vstart;
            out->n = vend - vstart;
            found = 1;
        }
        i = skip_ws(p, vend, n);
        if (i < n && p[i] == ',') {
            i = skip_ws(p, i + 1, n);
            continue;
        }
        if (i < n && p[i] == '}')
            return found ? CB_JSON_OK : CB_JSON_MISSING;
        return CB_JSON_SYNTAX;
    }
    return CB_JSON_SYNTAX;
}

int cb_json_next(cb_json arr, size_t *pos, cb_json *out)
{
    if (cb_json_typeof(arr) != CB_JSON_ARRAY)
        return CB_JSON_TYPE;
    const char *p = arr.p;
    size_t n = arr.n, i;
    if (*pos == 0) {
        i = skip_ws(p, 1, n);
        if (i < n && p[i] == ']')
            return CB_JSON_MISSING;
    } else {
        i = skip_ws(p, *pos, n);
        if (i >= n)
            return CB_JSON_SYNTAX;
        if (p[i] == ']')
            return CB_JSON_MISSING;
        if (p[i] != ',')
            return CB_JSON_SYNTAX;
        i = skip_ws(p, i + 1, n);
    }
    size_t end;
    int rc = skip_value(p, i, n, &end);
    if (rc)
        return rc;
    out->p = p + i;
    out->n = end - i;
    *pos = end;
    return CB_JSON_OK;
}

int cb_json_u64(cb_json v, uint64_t *out)
{
    if (cb_json_typeof(v) != CB_JSON_NUMBER)
        return CB_JSON_TYPE;
    uint64_t r = 0;
    for (size_t i = 0; i < v.n; i++) {
        char c = v.p[i];
        if (c < '0' || c > '9')
            return CB_JSON_TYPE; /* negative, fraction or exponent */
        uint64_t d = (uint64_t)(c - '0');
        if (r > (UINT64_MAX - d) / 10)
            return CB_JSON_RANGE;
        r = r * 10 + d;
    }
    *out = r;
    return CB_JSON_OK;
}

int cb_json_get_str(cb_json obj, const char *key, char *out, size_t cap)
{
    cb_json v;
    int rc = cb_json_get(obj, key, &v);
    if (rc)
        return rc;
    return cb_json_str(v, out, cap);
}
