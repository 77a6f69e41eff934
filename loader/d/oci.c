#include "oci.h"
#include "json.h"

static const char *const INDEX_TYPES[] = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
};
static const char *const MANIFEST_TYPES[] = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
};
static const char *const PREFIXES[] = {"application/vnd.cloud-boot.", "application/vnd.cloudboot."};
static const char *const ROLES[][2] = {
    {"kernel.v1", "kernel"},   {"initrd.v1", "initrd"},
    {"cmdline.v1", "cmdline"}, {"modules.v1.cpio+gzip", "modules"},
    {"plan.v1+hcl", "plan"},   {"boot.config.v1+json", "boot-config"},
    {"config.v1+json", "config"},
};

static int streq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

static const char *prefixed(const char *s, const char *prefix)
{
    while (*prefix) {
        if (*s != *prefix)
            return 0;
        s++;
        prefix++;
    }
    return s;
}

/* Append text to a NUL-terminated buffer of CB_OCI_ERR bytes, truncating. */
static void put(char *err, const char *s)
{
    size_t n = 0;
    while (err[n])
        n++;
    while (*s && n + 1 < CB_OCI_ERR)
        err[n++] = *s++;
    err[n] = 0;
}

static void fail(char *err, const char *a, const char *b, const char *c)
{
    err[0] = 0;
    put(err, a);
    if (b)
        put(err, b);
    if (c)
        put(err, c);
}

/* Content-Type may carry parameters ("; charset=utf-8"): compare the bare type. */
static int type_is(const char *ct, const char *t)
{
    while (*t && *ct == *t) {
        ct++;
        t++;
    }
    return *t == 0 && (*ct == 0 || *ct == ';' || *ct == ' ');
}

cb_oci_kind cb_oci_kind_of(const char *doc, size_t len, const char *content_type)
{
    cb_json root, v;
    char mt[128];
    if (cb_json_parse(doc, len, &root) || cb_json_typeof(root) != CB_JSON_OBJECT)
        return CB_OCI_KIND_UNKNOWN;
    const char *t = 0;
    if (cb_json_get_str(root, "mediaType", mt, sizeof mt) == CB_JSON_OK)
        t = mt;
    else if (content_type && content_type[0])
        t = content_type;
    if (t) {
        for (unsigned i = 0; i < 2; i++) {
            if (type_is(t, INDEX_TYPES[i]))
                return CB_OCI_KIND_INDEX;
            if (type_is(t, MANIFEST_TYPES[i]))
                return CB_OCI_KIND_MANIFEST;
        }
    }
    if (cb_json_get(root, "manifests", &v) == CB_JSON_OK && cb_json_typeof(v) == CB_JSON_ARRAY)
        return CB_OCI_KIND_INDEX;
    if (cb_json_get(root, "layers", &v) == CB_JSON_OK && cb_json_typeof(v) == CB_JSON_ARRAY)
        return CB_OCI_KIND_MANIFEST;
    return CB_OCI_KIND_UNKNOWN;
}

int cb_oci_digest_ok(const char *d)
{
    const char *h = prefixed(d, "sha256:");
    if (!h)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return 0;
    return h[64] == 0;
}

const char *cb_oci_role(const char *media_type)
{
    for (unsigned p = 0; p < 2; p++) {
        const char *rest = prefixed(media_type, PREFIXES[p]);
        if (!rest)
            continue;
        for (unsigned r = 0; r < sizeof ROLES / sizeof ROLES[0]; r++)
            if (streq(rest, ROLES[r][0]))
                return ROLES[r][1];
    }
    return 0;
}

/* A descriptor object → out; err names `what` on failure. */
static int read_desc(cb_json d, cb_oci_desc *out, const char *what, char *err)
{
    cb_json v;
    if (cb_json_typeof(d) != CB_JSON_OBJECT) {
        fail(err, what, ": descriptor is not an object", 0);
        return CB_OCI_BAD;
    }
    if (cb_json_get_str(d, "mediaType", out->media_type, sizeof out->media_type))
        out->media_type[0] = 0;
    if (cb_json_get_str(d, "digest", out->digest, sizeof out->digest) ||
        !cb_oci_digest_ok(out->digest)) {
        fail(err, what, ": digest missing or not sha256:<64 hex>", 0);
        return CB_OCI_BAD;
    }
    if (cb_json_get(d, "size", &v) || cb_json_u64(v, &out->size)) {
        fail(err, what, ": size missing or not a non-negative integer", 0);
        return CB_OCI_BAD;
    }
    return CB_OCI_OK;
}

int cb_oci_select(const char *doc, size_t len, const char *os, const char *arch,
                  cb_oci_desc *out, char err[CB_OCI_ERR])
{
    cb_json root, list, entry, plat;
    char eos[32], earch[32], seen[CB_OCI_ERR];
    err[0] = 0;
    seen[0] = 0;
    if (cb_json_parse(doc, len, &root) || cb_json_get(root, "manifests", &list) ||
        cb_json_typeof(list) != CB_JSON_ARRAY) {
        fail(err, "image index: not JSON with a \"manifests\" array", 0, 0);
        return CB_OCI_BAD;
    }
    size_t pos = 0;
    int n = 0, rc;
    while ((rc = cb_json_next(list, &pos, &entry)) == CB_JSON_OK) {
        n++;
        if (cb_json_get(entry, "platform", &plat) ||
            cb_json_get_str(plat, "os", eos, sizeof eos) ||
            cb_json_get_str(plat, "architecture", earch, sizeof earch))
            continue; /* entries without a platform (attestations, …) */
        if (streq(eos, os) && streq(earch, arch))
            return read_desc(entry, out, "image index entry", err);
        /* remember what is there, for the error line */
        size_t k = 0;
        while (seen[k])
            k++;
        if (k + 70 < sizeof seen) {
            char *s = seen;
            if (k) {
                s[k++] = ',';
                s[k++] = ' ';
            }
            for (const char *q = eos; *q;)
                s[k++] = *q++;
            s[k++] = '/';
            for (const char *q = earch; *q;)
                s[k++] = *q++;
            s[k] = 0;
        }
    }
    if (rc != CB_JSON_MISSING) {
        fail(err, "image index: malformed \"manifests\" array", 0, 0);
        return CB_OCI_BAD;
    }
    fail(err, "no manifest for ", os, "/");
    put(err, arch);
    put(err, " in the image index (it has: ");
    put(err, seen[0] ? seen : (n ? "no platforms" : "no entries"));
    put(err, ")");
    return CB_OCI_PLATFORM;
}

int cb_oci_boot_layers(const char *doc, size_t len, cb_oci_boot *out, char err[CB_OCI_ERR])
{
    cb_json root, layers, layer, cfg;
    cb_oci_desc d;
    int have_kernel = 0, rc;
    err[0] = 0;
    out->n_initrd = 0;
    out->has_cmdline = 0;
    out->config.digest[0] = 0;
    out->config.media_type[0] = 0;
    if (cb_json_parse(doc, len, &root) || cb_json_get(root, "layers", &layers) ||
        cb_json_typeof(layers) != CB_JSON_ARRAY) {
        fail(err, "manifest: not JSON with a \"layers\" array", 0, 0);
        return CB_OCI_BAD;
    }
    if (cb_json_get(root, "config", &cfg) == CB_JSON_OK &&
        read_desc(cfg, &out->config, "manifest config", err))
        return CB_OCI_BAD;
    size_t pos = 0;
    while ((rc = cb_json_next(layers, &pos, &layer)) == CB_JSON_OK) {
        if (read_desc(layer, &d, "manifest layer", err))
            return CB_OCI_BAD;
        const char *role = cb_oci_role(d.media_type);
        if (!role)
            continue;
        if (streq(role, "kernel")) {
            if (have_kernel) {
                fail(err, "manifest: more than one kernel layer", 0, 0);
                return CB_OCI_BAD;
            }
            out->kernel = d;
            have_kernel = 1;
        } else if (streq(role, "initrd")) {
            if (out->n_initrd == CB_OCI_MAX_INITRDS) {
                fail(err, "manifest: more than 4 initrd layers", 0, 0);
                return CB_OCI_BAD;
            }
            out->initrd[out->n_initrd++] = d;
        } else if (streq(role, "cmdline")) {
            out->cmdline = d;
            out->has_cmdline = 1;
        }
    }
    if (rc != CB_JSON_MISSING) {
        fail(err, "manifest: malformed \"layers\" array", 0, 0);
        return CB_OCI_BAD;
    }
    if (!have_kernel) {
        fail(err, "manifest has no kernel layer (media type application/vnd.cloud-boot.kernel.v1)",
             0, 0);
        return CB_OCI_NOKERNEL;
    }
    return CB_OCI_OK;
}

int cb_oci_config_arch(const char *doc, size_t len, char *os, size_t oscap, char *arch,
                       size_t archcap)
{
    cb_json root;
    os[0] = 0;
    arch[0] = 0;
    if (cb_json_parse(doc, len, &root) || cb_json_typeof(root) != CB_JSON_OBJECT)
        return CB_OCI_BAD;
    if (cb_json_get_str(root, "os", os, oscap))
        os[0] = 0;
    if (cb_json_get_str(root, "architecture", arch, archcap))
        arch[0] = 0;
    return CB_OCI_OK;
}
