/* A small non-allocating JSON scanner: enough for OCI manifests and image indexes.
 *
 * Values are spans into the caller's buffer. Lookups validate what they walk over (strings,
 * numbers, literals, nesting up to CB_JSON_MAX_DEPTH), so garbage gives an error, never a
 * read past the end.
 */
#ifndef CB_D_JSON_H
#define CB_D_JSON_H

#include <stddef.h>
#include <stdint.h>

#define CB_JSON_MAX_DEPTH 32

enum {
    CB_JSON_OK = 0,
    CB_JSON_MISSING = -1, /* key not in the object / array exhausted */
    CB_JSON_SYNTAX = -2,  /* not valid JSON */
    CB_JSON_TYPE = -3,    /* value of another type than asked for */
    CB_JSON_RANGE = -4,   /* number too large, string too long for the buffer */
};

typedef enum {
    CB_JSON_NONE, CB_JSON_OBJECT, CB_JSON_ARRAY, CB_JSON_STRING, CB_JSON_NUMBER,
    CB_JSON_TRUE, CB_JSON_FALSE, CB_JSON_NULL,
} cb_json_type;

typedef struct {
    const char *p; /* first byte of the value (leading whitespace skipped) */
    size_t n;      /* length of the value's text */
} cb_json;

/* The whole document as one value; CB_JSON_SYNTAX if there is trailing garbage. */
int cb_json_parse(const char *text, size_t len, cb_json *out);
cb_json_type cb_json_typeof(cb_json v);
/* Member `key` of object `obj` (the last one if repeated). */
int cb_json_get(cb_json obj, const char *key, cb_json *out);
/* Iterate an array: start with *pos = 0; returns CB_JSON_MISSING after the last element. */
int cb_json_next(cb_json arr, size_t *pos, cb_json *out);
/* Decode a string value into out (NUL-terminated); \uXXXX escapes beyond ASCII become UTF-8. */
int cb_json_str(cb_json v, char *out, size_t cap);
/* A non-negative integer (no fraction or exponent). */
int cb_json_u64(cb_json v, uint64_t *out);
/* Does string value v equal s (after unescaping)? */
int cb_json_str_eq(cb_json v, const char *s);
/* Convenience: string member `key` of obj into out. */
int cb_json_get_str(cb_json obj, const char *key, char *out, size_t cap);

#endif
