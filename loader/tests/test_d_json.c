/* Host test: the JSON scanner on valid documents, lookups, escapes, and garbage. */
#include <stdio.h>
#include <string.h>

#include "../d/json.h"

static int failures;
#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            printf("FAIL line %d: %s\n", __LINE__, #cond);                                    \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

static int parse(const char *s, cb_json *v) { return cb_json_parse(s, strlen(s), v); }

int main(void)
{
    cb_json root, v, e;
    char buf[64];
    uint64_t u;

    const char *doc = " {\"a\": 1, \"b\" : [true, false, null, {\"x\": \"y\"}, [], {}],"
                      " \"s\": \"q\\\"\\\\\\/\\n\\u0041\\u00e9\", \"n\": -1.5e3, \"a\": 42,"
                      " \"big\": 18446744073709551615, \"huge\": 18446744073709551616 } ";
    CHECK(parse(doc, &root) == CB_JSON_OK);
    CHECK(cb_json_typeof(root) == CB_JSON_OBJECT);
    CHECK(cb_json_get(root, "a", &v) == CB_JSON_OK && cb_json_u64(v, &u) == 0 && u == 42);
    CHECK(cb_json_get(root, "zz", &v) == CB_JSON_MISSING);
    CHECK(cb_json_get(root, "s", &v) == CB_JSON_OK);
    CHECK(cb_json_str(v, buf, sizeof buf) == CB_JSON_OK && !strcmp(buf, "q\"\\/\nA\xc3\xa9"));
    CHECK(cb_json_str(v, buf, 4) == CB_JSON_RANGE);
    CHECK(cb_json_get(root, "n", &v) == CB_JSON_OK && cb_json_u64(v, &u) == CB_JSON_TYPE);
    CHECK(cb_json_get(root, "big", &v) == CB_JSON_OK && cb_json_u64(v, &u) == 0 &&
          u == 18446744073709551615ull);
    CHECK(cb_json_get(root, "huge", &v) == CB_JSON_OK && cb_json_u64(v, &u) == CB_JSON_RANGE);
    CHECK(cb_json_get(root, "b", &v) == CB_JSON_OK && cb_json_typeof(v) == CB_JSON_ARRAY);
    {
        size_t pos = 0;
        int n = 0;
        cb_json_type want[] = {CB_JSON_TRUE, CB_JSON_FALSE, CB_JSON_NULL, CB_JSON_OBJECT,
                               CB_JSON_ARRAY, CB_JSON_OBJECT};
        while (cb_json_next(v, &pos, &e) == CB_JSON_OK) {
            CHECK(n < 6 && cb_json_typeof(e) == want[n]);
            if (n == 3)
                CHECK(cb_json_get_str(e, "x", buf, sizeof buf) == 0 && !strcmp(buf, "y"));
            n++;
        }
        CHECK(n == 6);
    }
    CHECK(cb_json_get(root, "a", &v) == 0 && cb_json_str(v, buf, sizeof buf) == CB_JSON_TYPE);
    CHECK(cb_json_str_eq((cb_json){"\"abc\"", 5}, "abc"));
    CHECK(!cb_json_str_eq((cb_json){"\"abc\"", 5}, "ab"));
    CHECK(!cb_json_str_eq((cb_json){"\"ab\"", 4}, "abc"));

    /* empty containers */
    CHECK(parse("{}", &root) == 0 && cb_json_get(root, "a", &v) == CB_JSON_MISSING);
    CHECK(parse("[ ]", &root) == 0);
    {
        size_t pos = 0;
        CHECK(cb_json_next(root, &pos, &e) == CB_JSON_MISSING);
    }
    CHECK(cb_json_get(root, "a", &v) == CB_JSON_TYPE);

    /* garbage is an error, never a crash */
    const char *bad[] = {"", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "[1 2]",
                         "\"abc", "\"a\\x\"", "\"a\\u12\"", "tru", "nul", "01", "-", "1.",
                         "1e", "{\"a\":1} x", "{'a':1}", "\"a\x01\"", "[[[[[[[[[[[[[[[[[[[["
                         "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
                         "]]]]]]]]]]]]]]]]]]]]", "{\"a\" 1}", "{1:2}"};
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse(bad[i], &root);
        if (rc == CB_JSON_OK) {
            printf("FAIL accepted garbage #%u: %s\n", i, bad[i]);
            failures++;
        }
    }
    /* truncations of a real document are all refused */
    for (size_t n = 0; n < strlen(doc) - 2; n++)
        if (cb_json_parse(doc, n, &root) == CB_JSON_OK) {
            printf("FAIL accepted a truncation at %zu\n", n);
            failures++;
        }
    /* depth 32 is fine, 33 is refused */
    {
        char deep[80];
        memset(deep, '[', 32);
        memset(deep + 32, ']', 32);
        CHECK(cb_json_parse(deep, 64, &root) == CB_JSON_OK);
        memset(deep, '[', 33);
        memset(deep + 33, ']', 33);
        CHECK(cb_json_parse(deep, 66, &root) == CB_JSON_RANGE);
    }
    if (!failures)
        printf("ok json\n");
    return failures ? 1 : 0;
}
