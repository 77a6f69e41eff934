/* SHA-256 (FIPS 180-4), streaming; no allocation, no libc. */
#ifndef CB_D_SHA256_H
#define CB_D_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t length; /* bytes hashed so far */
    uint8_t block[64];
    size_t used; /* bytes in block */
} cb_sha256;

void cb_sha256_init(cb_sha256 *s);
void cb_sha256_update(cb_sha256 *s, const void *data, size_t len);
void cb_sha256_final(cb_sha256 *s, uint8_t out[32]);
/* out: 64 lowercase hex digits + NUL */
void cb_sha256_hex(const uint8_t digest[32], char out[65]);

#endif
