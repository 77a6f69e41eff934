/* Host test: OCI index platform selection and manifest layer roles (both spellings). */
#include <stdio.h>
#include <string.h>

#include "../d/oci.h"

static int failures;
#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            printf("FAIL line %d: %s\n", __LINE__, #cond);                                    \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define D4 "sha256:4444444444444444444444444444444444444444444444444444444444444444"

static const char INDEX[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
    "\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D3
    "\",\"size\":1},"
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D1
    "\",\"size\":500,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\"}},"
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D2
    "\",\"size\":612,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}]}";

static const char INDEX_ARM_ONLY[] =
    "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+"
    "json\",\"digest\":\"" D1 "\",\"size\":500,\"platform\":{\"os\":\"linux\",\"architecture\":"
    "\"arm64\"}},{\"digest\":\"" D2 "\",\"size\":5,\"platform\":{\"os\":\"linux\","
    "\"architecture\":\"riscv64\"}}]}";

static const char MANIFEST[] =
    "{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\",\n"
    "  \"config\": {\"mediaType\": \"application/vnd.cloud-boot.config.v1+json\", \"digest\": \"" D4
    "\", \"size\": 40},\n  \"layers\": [\n"
    "    {\"mediaType\": \"application/vnd.cloud-boot.kernel.v1\", \"digest\": \"" D1
    "\", \"size\": 8123456, \"annotations\": {\"org.opencontainers.image.title\": \"vmlinuz\"}},\n"
    "    {\"mediaType\": \"application/vnd.cloudboot.initrd.v1\", \"digest\": \"" D2
    "\", \"size\": 30000000},\n"
    "    {\"mediaType\": \"application/vnd.cloud-boot.modules.v1.cpio+gzip\", \"digest\": \"" D4
    "\", \"size\": 3},\n"
    "    {\"mediaType\": \"application/vnd.cloud-boot.cmdline.v1\", \"digest\": \"" D3
    "\", \"size\": 17}\n  ]\n}\n";

int main(void)
{
    cb_oci_desc d;
    cb_oci_boot b;
    char err[CB_OCI_ERR];

    CHECK(cb_oci_kind_of(INDEX, strlen(INDEX), 0) == CB_OCI_KIND_INDEX);
    CHECK(cb_oci_kind_of(INDEX_ARM_ONLY, strlen(INDEX_ARM_ONLY), 0) == CB_OCI_KIND_INDEX);
    CHECK(cb_oci_kind_of(MANIFEST, strlen(MANIFEST), 0) == CB_OCI_KIND_MANIFEST);
    {
        const char *noty = "{\"schemaVersion\":2,\"layers\":[]}";
        CHECK(cb_oci_kind_of(noty, strlen(noty), 0) == CB_OCI_KIND_MANIFEST);
        CHECK(cb_oci_kind_of(noty, strlen(noty),
                             "application/vnd.docker.distribution.manifest.list.v2+json; x=1") ==
              CB_OCI_KIND_INDEX);
        CHECK(cb_oci_kind_of("[]", 2, 0) == CB_OCI_KIND_UNKNOWN);
        CHECK(cb_oci_kind_of("{\"x\":1}", 7, 0) == CB_OCI_KIND_UNKNOWN);
        CHECK(cb_oci_kind_of("<html>", 6, 0) == CB_OCI_KIND_UNKNOWN);
    }

    CHECK(cb_oci_select(INDEX, strlen(INDEX), "linux", "amd64", &d, err) == CB_OCI_OK);
    CHECK(!strcmp(d.digest, D2) && d.size == 612);
    CHECK(cb_oci_select(INDEX, strlen(INDEX), "linux", "arm64", &d, err) == CB_OCI_OK);
    CHECK(!strcmp(d.digest, D1) && d.size == 500 &&
          !strcmp(d.media_type, "application/vnd.oci.image.manifest.v1+json"));
    CHECK(cb_oci_select(INDEX_ARM_ONLY, strlen(INDEX_ARM_ONLY), "linux", "amd64", &d, err) ==
          CB_OCI_PLATFORM);
    CHECK(!strcmp(err, "no manifest for linux/amd64 in the image index (it has: linux/arm64, "
                       "linux/riscv64)"));
    printf("platform error: %s\n", err);
    CHECK(cb_oci_select("{\"manifests\":[]}", 16, "linux", "amd64", &d, err) == CB_OCI_PLATFORM);
    CHECK(strstr(err, "(it has: no entries)") != 0);
    CHECK(cb_oci_select(MANIFEST, strlen(MANIFEST), "linux", "amd64", &d, err) == CB_OCI_BAD);
    {
        const char *bad = "{\"manifests\":[{\"digest\":\"sha256:12\",\"size\":1,\"platform\":"
                          "{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}";
        CHECK(cb_oci_select(bad, strlen(bad), "linux", "amd64", &d, err) == CB_OCI_BAD);
        CHECK(strstr(err, "digest") != 0);
    }

    CHECK(cb_oci_boot_layers(MANIFEST, strlen(MANIFEST), &b, err) == CB_OCI_OK);
    CHECK(!strcmp(b.kernel.digest, D1) && b.kernel.size == 8123456);
    CHECK(b.n_initrd == 1 && !strcmp(b.initrd[0].digest, D2) && b.initrd[0].size == 30000000);
    CHECK(b.has_cmdline && !strcmp(b.cmdline.digest, D3) && b.cmdline.size == 17);
    CHECK(!strcmp(b.config.digest, D4) &&
          !strcmp(b.config.media_type, "application/vnd.cloud-boot.config.v1+json"));
    {
        const char *nok = "{\"layers\":[{\"mediaType\":\"application/vnd.cloud-boot.initrd.v1\","
                          "\"digest\":\"" D1 "\",\"size\":1}]}";
        CHECK(cb_oci_boot_layers(nok, strlen(nok), &b, err) == CB_OCI_NOKERNEL);
        CHECK(strstr(err, "no kernel layer") != 0);
        const char *neg = "{\"layers\":[{\"mediaType\":\"application/vnd.cloud-boot.kernel.v1\","
                          "\"digest\":\"" D1 "\",\"size\":-1}]}";
        CHECK(cb_oci_boot_layers(neg, strlen(neg), &b, err) == CB_OCI_BAD);
        CHECK(strstr(err, "size") != 0);
        const char *upper = "{\"layers\":[{\"mediaType\":\"application/vnd.cloud-boot.kernel.v1\","
                            "\"digest\":\"sha256:AAAA111111111111111111111111111111111111111111111111"
                            "111111111111\",\"size\":1}]}";
        CHECK(cb_oci_boot_layers(upper, strlen(upper), &b, err) == CB_OCI_BAD);
        CHECK(cb_oci_boot_layers(MANIFEST, strlen(MANIFEST) - 5, &b, err) == CB_OCI_BAD);
    }
    CHECK(cb_oci_role("application/vnd.cloudboot.kernel.v1") != 0 &&
          !strcmp(cb_oci_role("application/vnd.cloudboot.kernel.v1"), "kernel"));
    CHECK(cb_oci_role("application/vnd.cloud-boot.kernel.v2") == 0);
    CHECK(cb_oci_role("application/octet-stream") == 0);
    {
        char os[16], arch[16];
        const char *cfg = "{\"architecture\": \"arm64\", \"os\": \"linux\"}";
        CHECK(cb_oci_config_arch(cfg, strlen(cfg), os, sizeof os, arch, sizeof arch) == 0);
        CHECK(!strcmp(os, "linux") && !strcmp(arch, "arm64"));
        CHECK(cb_oci_config_arch("{}", 2, os, sizeof os, arch, sizeof arch) == 0 && !arch[0]);
    }
    if (!failures)
        printf("ok oci\n");
    return failures ? 1 : 0;
}
