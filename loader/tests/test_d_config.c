/* Host test: the embedded configuration block's layout (printed for the Python side to
 * compare with cloudboot/loader/netconfig.py) and its checks on a block Python filled in.
 *   test_d_config layout       -> "name offset size" lines
 *   test_d_config check FILE   -> "ok …fields…" or "error: <text>" for a 2592-byte block */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../d/config.h"

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "layout")) {
        printf("magic %zu %zu\n", offsetof(cb_d_config, magic), sizeof(((cb_d_config *)0)->magic));
        printf("size %zu 4\n", offsetof(cb_d_config, size));
        printf("flags %zu 4\n", offsetof(cb_d_config, flags));
        printf("registry %zu %zu\n", offsetof(cb_d_config, registry),
               sizeof(((cb_d_config *)0)->registry));
        printf("repository %zu %zu\n", offsetof(cb_d_config, repository),
               sizeof(((cb_d_config *)0)->repository));
        printf("reference %zu %zu\n", offsetof(cb_d_config, reference),
               sizeof(((cb_d_config *)0)->reference));
        printf("cmdline %zu %zu\n", offsetof(cb_d_config, cmdline),
               sizeof(((cb_d_config *)0)->cmdline));
        printf("total %zu\n", sizeof(cb_d_config));
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "check")) {
        static cb_d_config c;
        char err[160];
        FILE *f = fopen(argv[2], "rb");
        if (!f || fread(&c, 1, sizeof c, f) != sizeof c) {
            printf("error: cannot read %zu bytes from %s\n", sizeof c, argv[2]);
            return 2;
        }
        fclose(f);
        if (cb_d_config_check(&c, err, sizeof err)) {
            printf("error: %s\n", err);
            return 1;
        }
        printf("ok registry=%s repository=%s reference=%s insecure=%d cmdline=%s\n", c.registry,
               c.repository, c.reference, (c.flags & CB_D_FLAG_INSECURE) ? 1 : 0, c.cmdline);
        return 0;
    }
    fprintf(stderr, "usage: %s layout | check FILE\n", argv[0]);
    return 2;
}
