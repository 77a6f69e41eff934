/* Host test: SHA-256 against the FIPS 180-2/NIST example vectors, chunked updates, and a
 * stdin mode ("-") the Python harness compares with hashlib. */
#include <stdio.h>
#include <string.h>

#include "../d/sha256.h"

static int failures;

static void hex_of(const void *data, size_t len, size_t chunk, char out[65])
{
    cb_sha256 s;
    uint8_t d[32];
    const unsigned char *p = data;
    cb_sha256_init(&s);
    while (len) {
        size_t n = len < chunk ? len : chunk;
        cb_sha256_update(&s, p, n);
        p += n;
        len -= n;
    }
    cb_sha256_final(&s, d);
    cb_sha256_hex(d, out);
}

static void check(const char *name, const void *data, size_t len, const char *want)
{
    static const size_t chunks[] = {1, 3, 63, 64, 65, 1000, (size_t)-1};
    char got[65];
    for (unsigned i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        hex_of(data, len, chunks[i], got);
        if (strcmp(got, want)) {
            printf("FAIL %s (chunk %zu): got %s want %s\n", name, chunks[i], got, want);
            failures++;
            return;
        }
    }
    printf("ok %s\n", name);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "-")) {
        static unsigned char buf[1 << 16];
        cb_sha256 s;
        uint8_t d[32];
        char hex[65];
        size_t n;
        cb_sha256_init(&s);
        while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
            cb_sha256_update(&s, buf, n);
        cb_sha256_final(&s, d);
        cb_sha256_hex(d, hex);
        printf("%s\n", hex);
        return 0;
    }
    check("empty", "", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check("abc", "abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check("448-bit", m448, strlen(m448),
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    check("896-bit", m896, strlen(m896),
          "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    static char million[1000000];
    memset(million, 'a', sizeof million);
    check("million-a", million, sizeof million,
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* 55 and 56 bytes: the padding boundary */
    check("55-a", million, 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    check("56-a", million, 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    return failures ? 1 : 0;
}
