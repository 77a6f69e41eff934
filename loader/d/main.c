/* Path D: one UEFI program that brings the network up with the firmware's stack, resolves an
 * OCI image index to this platform's manifest, streams kernel and initrd into memory with
 * sha256 verification, and starts the kernel through LoadFile2 (../lib/linuxboot).
 * Every failure prints one clear line (and a CLOUDBOOT-EVENT fatal line for the lab) and
 * returns to the firmware. */
#include "../include/efi.h"
#include "../lib/console.h"
#include "../lib/fw.h"
#include "../lib/libc.h"
#include "../lib/linuxboot.h"
#include "../lib/ucs2.h"
#include "../lib/vars.h"
#include "config.h"
#include "http.h"
#include "oci.h"
#include "sha256.h"

#if defined(__x86_64__)
#define GO_ARCH "amd64"
#elif defined(__aarch64__)
#define GO_ARCH "arm64"
#elif defined(__arm__)
#define GO_ARCH "arm" /* Go's name for 32-bit ARM (the OCI platform's variant v7 is not read) */
#else
#error "Path D is built for x86_64, aarch64 and armv7"
#endif

#define MIB (1024ull * 1024)
#define CAP_MANIFEST (256 * 1024ull)
#define CAP_CONFIG (64 * 1024ull)
#define CAP_CMDLINE 2047ull
#define CAP_KERNEL (256 * MIB)
#define CAP_INITRD (1024 * MIB)
#define TIMEOUT_DHCP 30000
#define TIMEOUT_HTTP 30000

static const char ACCEPT[] =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

static cb_net net;
static const cb_d_config *cfg;
static char base[512]; /* "http://host:port/v2/<repo>" */

/* One CLOUDBOOT-EVENT line; `extra` is already JSON ("" or ",\"k\":v…"). */
static void event(const char *phase, const char *extra)
{
    cb_printf("CLOUDBOOT-EVENT {\"phase\":\"%s\",\"source\":\"loader-d\"%s}\n", phase, extra);
}

static void json_escape(char *out, UINTN cap, const char *s)
{
    UINTN n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += cb_snprintf(out + n, cap - n, "\\u%x%x%x%x", 0, 0, c >> 4, c & 15);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = 0;
}

/* The fatal event after the error line, and CloudBootMark "d:fatal <category>: <message>"
 * for a firmware whose console nobody sees (Apple VZ: the framebuffer only); returns status
 * for `return fatal(…)`. */
static EFI_STATUS fatal(EFI_STATUS st, const char *category, const char *message)
{
    static char esc[600], extra[700], mark[480];
    json_escape(esc, sizeof esc, message);
    cb_snprintf(extra, sizeof extra, ",\"category\":\"%s\",\"message\":\"%s\"", category, esc);
    event("fatal", extra);
    cb_snprintf(mark, sizeof mark, "d:fatal %s: %s", category, message);
    cb_mark(mark);
    return st;
}

/* cb_fail + fatal event with the same text. */
static EFI_STATUS fail(EFI_STATUS st, const char *category, const char *msg)
{
    cb_fail(st, "%s", msg);
    return fatal(st, category, msg);
}

typedef struct {
    const char *what;
    cb_sha256 sha;
    UINT64 size;
    UINT64 next_report;
} blob_progress;

static int on_chunk(void *ctx, const UINT8 *data, UINTN n, UINT64 total)
{
    blob_progress *p = ctx;
    cb_sha256_update(&p->sha, data, n);
    if (p->size >= 4 * MIB && total >= p->next_report) {
        cb_log("%s: %lu of %lu KiB", p->what, total / 1024, p->size / 1024);
        p->next_report += p->size / 4;
    }
    return 0;
}

static int digest_matches(cb_sha256 *s, const char *want, char got_out[72])
{
    UINT8 d[32];
    char hex[65];
    cb_sha256_final(s, d);
    cb_sha256_hex(d, hex);
    cb_snprintf(got_out, 72, "sha256:%s", hex);
    return strcmp(got_out, want) == 0;
}

/* GET base + path into buf; 2xx required; exact size and digest when `want` is given. */
static EFI_STATUS fetch(const char *what, const char *path, const char *accept, void *buf,
                        UINT64 cap, UINT64 *got, const cb_oci_desc *want,
                        cb_http_response *resp)
{
    static char url[1024], msg[600];
    blob_progress prog;
    EFI_STATUS st;
    cb_snprintf(url, sizeof url, "%s%s", base, path);
    cb_sha256_init(&prog.sha);
    prog.what = what;
    prog.size = want ? want->size : 0;
    prog.next_report = prog.size / 4;
    st = cb_http_get(&net, url, accept, buf, cap, got, resp, on_chunk, &prog, TIMEOUT_HTTP);
    if (st == EFI_BUFFER_TOO_SMALL) {
        cb_snprintf(msg, sizeof msg, "%s: the server sends %lu bytes, over the %lu-byte limit "
                    "(GET %s)", what, resp->content_length, cap, url);
        return fail(st, "init-network", msg);
    }
    if (EFI_ERROR(st)) {
        cb_snprintf(msg, sizeof msg, "%s: GET %s failed: registry unreachable or the "
                    "transfer broke (see the line above)", what, url);
        return fatal(st, "init-network", msg);
    }
    if (resp->status < 200 || resp->status > 299) {
        char body[160];
        UINT64 n = *got < sizeof body - 1 ? *got : sizeof body - 1;
        for (UINT64 i = 0; i < n; i++) {
            char c = ((char *)buf)[i];
            body[i] = (c >= 0x20 && c < 0x7f) ? c : ' ';
        }
        body[n] = 0;
        cb_snprintf(msg, sizeof msg, "%s: GET %s: HTTP %d %s", what, url, resp->status, body);
        return fail(EFI_NOT_FOUND, "init-network", msg);
    }
    if (want) {
        char got_digest[72];
        if (*got != want->size) {
            cb_snprintf(msg, sizeof msg, "%s %s: got %lu bytes, the manifest says %lu (refused)",
                        what, want->digest, *got, want->size);
            return fail(EFI_COMPROMISED_DATA, "init-network", msg);
        }
        if (!digest_matches(&prog.sha, want->digest, got_digest)) {
            cb_snprintf(msg, sizeof msg, "%s: digest mismatch: expected %s, got %s (refused)",
                        what, want->digest, got_digest);
            return fail(EFI_COMPROMISED_DATA, "init-network", msg);
        }
    }
    return EFI_SUCCESS;
}

/* A blob of a known size into fresh pages (or into dst when given). */
static EFI_STATUS fetch_blob(const char *what, const cb_oci_desc *d, UINT64 cap, UINT8 *dst,
                             UINT8 **out)
{
    static char path[128], msg[300];
    cb_http_response resp;
    UINT64 got = 0;
    if (d->size > cap) {
        cb_snprintf(msg, sizeof msg, "%s %s is %lu bytes, over the %lu MiB cap (refused)", what,
                    d->digest, d->size, cap / MIB);
        return fail(EFI_BAD_BUFFER_SIZE, "init-plan", msg);
    }
    UINT8 *buf = dst ? dst : cb_alloc_pages((UINTN)d->size + 1);
    if (!buf) {
        cb_snprintf(msg, sizeof msg, "%s: cannot allocate %lu bytes", what, d->size);
        return fail(EFI_OUT_OF_RESOURCES, "init-plan", msg);
    }
    cb_log("%s: fetching %s (%lu bytes)", what, d->digest, d->size);
    cb_snprintf(path, sizeof path, "/blobs/%s", d->digest);
    /* room for one byte more than declared, so a longer blob is caught */
    EFI_STATUS st = fetch(what, path, NULL, buf, d->size + (dst ? 0 : 1), &got, d, &resp);
    if (EFI_ERROR(st)) {
        if (!dst)
            cb_free_pages(buf, (UINTN)d->size + 1);
        return st;
    }
    cb_log("%s: %lu bytes, sha256 verified", what, got);
    *out = buf;
    return EFI_SUCCESS;
}

static EFI_STATUS run(void)
{
    static char err[160], msg[600], path[512], extra[300];
    static char manifest[CAP_MANIFEST + 1];
    cb_http_response resp;
    cb_oci_desc mdesc;
    cb_oci_boot boot;
    UINT64 got = 0;
    EFI_STATUS st;

    EFI_STATUS marked = cb_mark("d:start");
    if (EFI_ERROR(marked))
        cb_log("warning: cannot write CloudBootMark (%s); going on", cb_status_name(marked));
    cfg = cb_d_config_get(err, sizeof err);
    if (!cfg)
        return fail(EFI_NOT_READY, "init-plan", err);
    int insecure = (cfg->flags & CB_D_FLAG_INSECURE) != 0;
    cb_snprintf(base, sizeof base, "%s://%s/v2/%s", insecure ? "http" : "https", cfg->registry,
                cfg->repository);
    cb_log("Path D network loader (%s): %s/%s%s%s", GO_ARCH, cfg->registry, cfg->repository,
           cb_startswith(cfg->reference, "sha256:") ? "@" : ":", cfg->reference);

    st = cb_net_up(&net, TIMEOUT_DHCP);
    if (EFI_ERROR(st))
        return fatal(st, "init-network", net.error);
    cb_log("net-up %s", net.address_text);
    cb_snprintf(extra, sizeof extra, ",\"address\":\"%s\",\"method\":\"dhcp\"", net.address_text);
    event("net-up", extra);

    /* tag or digest → manifest or index */
    cb_oci_desc by_digest, *want = NULL;
    if (cb_startswith(cfg->reference, "sha256:")) {
        if (!cb_oci_digest_ok(cfg->reference))
            return fail(EFI_INVALID_PARAMETER, "init-plan",
                        "embedded digest is not sha256:<64 lowercase hex>");
        cb_strlcpy(by_digest.digest, cfg->reference, sizeof by_digest.digest);
        by_digest.media_type[0] = 0;
        by_digest.size = 0;
        want = &by_digest;
    }
    cb_snprintf(path, sizeof path, "/manifests/%s", cfg->reference);
    st = fetch("manifest", path, ACCEPT, manifest, CAP_MANIFEST, &got, NULL, &resp);
    if (EFI_ERROR(st))
        return st;
    if (want) {
        cb_sha256 s;
        char got_digest[72];
        cb_sha256_init(&s);
        cb_sha256_update(&s, manifest, (UINTN)got);
        if (!digest_matches(&s, want->digest, got_digest)) {
            cb_snprintf(msg, sizeof msg, "manifest: digest mismatch: asked for %s, got %s "
                        "(refused)", want->digest, got_digest);
            return fail(EFI_COMPROMISED_DATA, "init-network", msg);
        }
    }
    cb_oci_kind kind = cb_oci_kind_of(manifest, (UINTN)got, resp.content_type);
    if (kind == CB_OCI_KIND_INDEX) {
        if (cb_oci_select(manifest, (UINTN)got, "linux", GO_ARCH, &mdesc, err)) {
            cb_snprintf(msg, sizeof msg, "%s:%s: %s", cfg->repository, cfg->reference, err);
            return fail(EFI_NOT_FOUND, "init-plan", msg);
        }
        cb_log("index: linux/%s -> %s", GO_ARCH, mdesc.digest);
        cb_snprintf(path, sizeof path, "/manifests/%s", mdesc.digest);
        st = fetch("manifest", path, ACCEPT, manifest, CAP_MANIFEST, &got, &mdesc, &resp);
        if (EFI_ERROR(st))
            return st;
        kind = cb_oci_kind_of(manifest, (UINTN)got, resp.content_type);
    }
    if (kind != CB_OCI_KIND_MANIFEST) {
        cb_snprintf(msg, sizeof msg, "%s:%s is not an OCI image manifest or index (Content-Type "
                    "%s)", cfg->repository, cfg->reference, resp.content_type);
        return fail(EFI_UNSUPPORTED, "init-plan", msg);
    }
    if (cb_oci_boot_layers(manifest, (UINTN)got, &boot, err)) {
        cb_snprintf(msg, sizeof msg, "%s:%s: %s", cfg->repository, cfg->reference, err);
        return fail(EFI_UNSUPPORTED, "init-plan", msg);
    }

    /* A single-platform artifact says its platform in its config blob: check it. */
    const char *crole = cb_oci_role(boot.config.media_type);
    if (crole && strcmp(crole, "config") == 0 && boot.config.size <= CAP_CONFIG) {
        static char cbuf[CAP_CONFIG + 1];
        char os[32], arch[32];
        cb_snprintf(path, sizeof path, "/blobs/%s", boot.config.digest);
        st = fetch("config", path, NULL, cbuf, CAP_CONFIG, &got, &boot.config, &resp);
        if (EFI_ERROR(st))
            return st;
        cb_oci_config_arch(cbuf, (UINTN)got, os, sizeof os, arch, sizeof arch);
        if (arch[0] && strcmp(arch, GO_ARCH) != 0) {
            cb_snprintf(msg, sizeof msg, "%s:%s is for %s/%s, this loader is linux/%s",
                        cfg->repository, cfg->reference, os, arch, GO_ARCH);
            return fail(EFI_UNSUPPORTED, "init-plan", msg);
        }
    }

    /* kernel */
    UINT8 *kernel = NULL, *initrd = NULL;
    st = fetch_blob("kernel", &boot.kernel, CAP_KERNEL, NULL, &kernel);
    if (EFI_ERROR(st))
        return st;
    UINT16 machine = 0;
    if (!cb_is_efi_image(kernel, (UINTN)boot.kernel.size, &machine)) {
        if (machine)
            cb_snprintf(msg, sizeof msg, "kernel %s is a PE image for machine 0x%x, not this "
                        "loader's 0x%x (refused)", boot.kernel.digest, machine,
                        cb_native_machine());
        else
            cb_snprintf(msg, sizeof msg, "kernel %s is not an EFI image (no MZ/PE header; "
                        "build the kernel with CONFIG_EFI_STUB) (refused)", boot.kernel.digest);
        return fail(EFI_UNSUPPORTED, "target-kernel", msg);
    }

    /* initrds, concatenated (Linux unpacks a sequence of cpio archives) */
    UINT64 isize = 0;
    for (int i = 0; i < boot.n_initrd; i++) {
        isize += boot.initrd[i].size;
        if (isize > CAP_INITRD) {
            cb_snprintf(msg, sizeof msg, "initrds: %lu bytes together, over the %lu MiB cap "
                        "(refused)", isize, CAP_INITRD / MIB);
            return fail(EFI_BAD_BUFFER_SIZE, "init-plan", msg);
        }
    }
    if (isize) {
        initrd = cb_alloc_pages((UINTN)isize);
        if (!initrd)
            return fail(EFI_OUT_OF_RESOURCES, "init-plan", "initrd: out of memory");
        UINT64 at = 0;
        for (int i = 0; i < boot.n_initrd; i++) {
            UINT8 *unused;
            st = fetch_blob("initrd", &boot.initrd[i], CAP_INITRD, initrd + at, &unused);
            if (EFI_ERROR(st))
                return st;
            at += boot.initrd[i].size;
        }
    }

    /* command line: the embedded one, else the artifact's cmdline layer */
    static char cmdline[CAP_CMDLINE + 1];
    const char *from = "embedded";
    cb_strlcpy(cmdline, cfg->cmdline, sizeof cmdline);
    if (!cmdline[0] && boot.has_cmdline) {
        UINT8 *c;
        st = fetch_blob("cmdline", &boot.cmdline, CAP_CMDLINE, NULL, &c);
        if (EFI_ERROR(st))
            return st;
        UINT64 n = boot.cmdline.size;
        while (n && (c[n - 1] == '\n' || c[n - 1] == '\r' || c[n - 1] == 0))
            n--;
        memcpy(cmdline, c, (UINTN)n);
        cmdline[n] = 0;
        from = "artifact";
    }
    static CHAR16 wcmd[CAP_CMDLINE + 1];
    if (ucs2_from_utf8(wcmd, CAP_CMDLINE + 1, cmdline, strlen(cmdline)) == CB_UCS2_ERROR)
        return fail(EFI_INVALID_PARAMETER, "init-plan",
                    "command line: not valid UTF-8 within the BMP");
    cb_snprintf(extra, sizeof extra, ",\"found_by\":\"oci\",\"bytes\":%lu,\"kernel\":\"%s\"",
                boot.kernel.size + isize, boot.kernel.digest);
    event("materialised", extra);
    cb_log("starting the kernel (%lu bytes, initrd %lu bytes, %s cmdline: %s)",
           boot.kernel.size, isize, from, cmdline);
    cb_snprintf(msg, sizeof msg, "d:boot %s", boot.kernel.digest);
    cb_mark(msg);
    st = cb_linux_boot(kernel, (UINTN)boot.kernel.size, initrd, (UINTN)isize, wcmd);
    return fatal(st, "target-kernel", "the kernel could not be started (see the line above)");
}

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st)
{
    cb_init(image, st);
    EFI_STATUS rc = run();
    cb_log("returning to the firmware (%s)", cb_status_name(rc));
    return rc;
}
