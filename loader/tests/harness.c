/* Host harness for the loader's pure C (ext4, UCS-2, version order, PE check).
 * Built with the host cc by tests/unit/test_loader_c.py together with lib/libc.c,
 * lib/ucs2.c, lib/ext4.c and lib/peimage.c; the pytest side checks what it prints.
 *
 *   harness ext4-info IMAGE            uuid, label, block size
 *   harness ext4-cat IMAGE PATH        file contents (symlinks followed) to stdout
 *   harness ext4-ls IMAGE PATH         one "name ino type" line per entry
 *   harness ext4-kernel IMAGE          kernel, initrd, version
 *   harness vercmp A B                 -1, 0 or 1 (dpkg order)
 *   harness utf8-to-ucs2 HEX           the UCS-2 code units in hex, or "error"
 *   harness ucs2-to-utf8 HEX           (HEX = little-endian UCS-2) UTF-8 in hex, or "error"
 *   harness vartext HEX                decoded variable text, "garbage" or "too-long"
 *   harness pe FILE                    "efi <machine>" or "not-efi <machine>"
 */
#include <stdio.h>
#include <stdlib.h>
#include "../lib/ext4.h"
#include "../lib/libc.h"
#include "../lib/linuxboot.h"
#include "../lib/ucs2.h"

void *cb_alloc(UINTN size) { return malloc(size ? size : 1); }
void cb_free(void *p) { free(p); }
void *cb_alloc_pages(UINTN size) { return malloc(size ? size : 1); }
void cb_free_pages(void *p, UINTN size) {
    (void)size;
    free(p);
}

static EFI_STATUS file_read(void *ctx, UINT64 offset, UINTN size, void *buf) {
    FILE *f = ctx;
    if (fseeko(f, (off_t)offset, SEEK_SET) != 0 || fread(buf, 1, size, f) != size)
        return EFI_DEVICE_ERROR;
    return EFI_SUCCESS;
}

static int open_fs(ext4_fs *fs, const char *image) {
    FILE *f = fopen(image, "rb");
    if (!f) {
        perror(image);
        exit(2);
    }
    EFI_STATUS st = ext4_open(fs, file_read, f);
    if (EFI_ERROR(st)) {
        printf("open-error %llx\n", (unsigned long long)(st & ~EFI_ERROR_BIT));
        return 1;
    }
    return 0;
}

static int ls_cb(void *ctx, const char *name, UINTN len, UINT32 ino, int type) {
    (void)ctx;
    printf("%.*s %u %d\n", (int)len, name, ino, type);
    return 0;
}

static UINTN unhex(const char *s, UINT8 *out, UINTN cap) {
    UINTN n = 0;
    for (; s[0] && s[1] && n < cap; s += 2) {
        unsigned v;
        sscanf(s, "%2x", &v);
        out[n++] = (UINT8)v;
    }
    return n;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: see harness.c\n");
        return 2;
    }
    const char *cmd = argv[1];
    ext4_fs fs;
    if (!strcmp(cmd, "ext4-info")) {
        if (open_fs(&fs, argv[2]))
            return 1;
        char uuid[37];
        ext4_uuid_text(&fs, uuid);
        printf("uuid %s\nlabel %s\nblock_size %u\ndesc_size %u\n", uuid, fs.label, fs.block_size,
               fs.desc_size);
        return 0;
    }
    if (!strcmp(cmd, "ext4-cat") || !strcmp(cmd, "ext4-ls")) {
        if (argc < 4 || open_fs(&fs, argv[2]))
            return 1;
        UINT32 ino;
        EFI_STATUS st = ext4_lookup(&fs, argv[3], &ino);
        if (EFI_ERROR(st)) {
            printf("lookup-error %llx\n", (unsigned long long)(st & ~EFI_ERROR_BIT));
            return 1;
        }
        if (!strcmp(cmd, "ext4-ls"))
            return EFI_ERROR(ext4_readdir(&fs, ino, ls_cb, NULL)) ? 1 : 0;
        void *data;
        UINTN size;
        st = ext4_read_file(&fs, ino, &data, &size);
        if (EFI_ERROR(st)) {
            printf("read-error %llx\n", (unsigned long long)(st & ~EFI_ERROR_BIT));
            return 1;
        }
        fwrite(data, 1, size, stdout);
        ext4_free(data, size);
        return 0;
    }
    if (!strcmp(cmd, "ext4-kernel")) {
        if (open_fs(&fs, argv[2]))
            return 1;
        char k[256], i[256], v[128];
        EFI_STATUS st = ext4_find_kernel(&fs, k, sizeof(k), i, sizeof(i), v, sizeof(v));
        if (EFI_ERROR(st)) {
            printf("not-found\n");
            return 1;
        }
        printf("kernel %s\ninitrd %s\nversion %s\n", k, i, v);
        return 0;
    }
    if (!strcmp(cmd, "vercmp") && argc == 4) {
        int r = cb_version_cmp(argv[2], argv[3]);
        printf("%d\n", r < 0 ? -1 : r > 0 ? 1 : 0);
        return 0;
    }
    if (!strcmp(cmd, "utf8-to-ucs2")) {
        UINT8 in[512];
        CHAR16 out[512];
        UINTN n = unhex(argv[2], in, sizeof(in));
        UINTN m = ucs2_from_utf8(out, argc > 3 ? (UINTN)atoi(argv[3]) : 512, (char *)in, n);
        if (m == CB_UCS2_ERROR) {
            printf("error\n");
            return 0;
        }
        for (UINTN k = 0; k < m; k++)
            printf("%04x", out[k]);
        printf("\n");
        return 0;
    }
    if (!strcmp(cmd, "ucs2-to-utf8")) {
        UINT8 in[1024];
        CHAR16 u[512];
        char out[1536];
        UINTN n = unhex(argv[2], in, sizeof(in));
        memcpy(u, in, n);
        UINTN m = ucs2_to_utf8(out, sizeof(out), u, n / 2);
        if (m == CB_UCS2_ERROR) {
            printf("error\n");
            return 0;
        }
        for (UINTN k = 0; k < m; k++)
            printf("%02x", (UINT8)out[k]);
        printf("\n");
        return 0;
    }
    if (!strcmp(cmd, "vartext")) {
        UINT8 in[2048];
        char out[256];
        UINTN n = unhex(argv[2], in, sizeof(in));
        int r = cb_var_text_decode(in, n, out, sizeof(out));
        printf("%s\n", r == 0 ? out : r == -2 ? "too-long" : "garbage");
        return 0;
    }
    if (!strcmp(cmd, "pe")) {
        FILE *f = fopen(argv[2], "rb");
        if (!f)
            return 2;
        static UINT8 buf[1 << 20];
        UINTN n = fread(buf, 1, sizeof(buf), f);
        UINT16 machine;
        int ok = cb_is_efi_image(buf, n, &machine);
        printf("%s %04x\n", ok ? "efi" : "not-efi", machine);
        return 0;
    }
    fprintf(stderr, "unknown command %s\n", cmd);
    return 2;
}
