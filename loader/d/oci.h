/* OCI image indexes and manifests for Path D: pick this platform's manifest, find the
 * kernel / initrd / cmdline layers by cloud-boot media type (either spelling). Pure C. */
#ifndef CB_D_OCI_H
#define CB_D_OCI_H

#include <stddef.h>
#include <stdint.h>

#define CB_OCI_MAX_INITRDS 4
#define CB_OCI_ERR 160

enum {
    CB_OCI_OK = 0,
    CB_OCI_BAD = -1,      /* not JSON / not an OCI document / a field missing or malformed */
    CB_OCI_PLATFORM = -2, /* an index without an entry for the wanted platform */
    CB_OCI_NOKERNEL = -3, /* a manifest without a kernel layer */
};

typedef enum { CB_OCI_KIND_UNKNOWN, CB_OCI_KIND_INDEX, CB_OCI_KIND_MANIFEST } cb_oci_kind;

typedef struct {
    char media_type[128];
    char digest[72]; /* "sha256:" + 64 lowercase hex */
    uint64_t size;
} cb_oci_desc;

typedef struct {
    cb_oci_desc config;
    cb_oci_desc kernel;
    cb_oci_desc initrd[CB_OCI_MAX_INITRDS];
    int n_initrd;
    cb_oci_desc cmdline;
    int has_cmdline;
} cb_oci_boot;

/* Index or manifest, from the document's mediaType (or, without one, the Content-Type
 * header, or its shape: "manifests" vs "layers"). content_type may be NULL. */
cb_oci_kind cb_oci_kind_of(const char *doc, size_t len, const char *content_type);
/* "sha256:<64 lowercase hex>"? */
int cb_oci_digest_ok(const char *digest);
/* The cloud-boot role of a media type ("kernel", "initrd", …) or NULL. */
const char *cb_oci_role(const char *media_type);
/* From an image index: the manifest descriptor for os/arch (Go names). On CB_OCI_PLATFORM
 * err says which platforms the index has. */
int cb_oci_select(const char *doc, size_t len, const char *os, const char *arch,
                  cb_oci_desc *out, char err[CB_OCI_ERR]);
/* From an image manifest: the boot layers. */
int cb_oci_boot_layers(const char *doc, size_t len, cb_oci_boot *out, char err[CB_OCI_ERR]);
/* The "architecture" of a cloud-boot config blob ({"architecture": A, "os": O}); out[0]=0 if
 * absent. */
int cb_oci_config_arch(const char *doc, size_t len, char *os, size_t oscap, char *arch,
                       size_t archcap);

#endif
