#include "config.h"

/* In .data (initialised, so it is in the file), not const: the compiler must not fold the
 * empty fields, since they are written into the binary after it is built. */
__attribute__((used, aligned(16))) cb_d_config cb_d_embedded_config = {
    CB_D_MAGIC, sizeof(cb_d_config), 0, "", "", "", "",
};

static void say(char *err, unsigned cap, const char *a, const char *b)
{
    unsigned n = 0;
    for (; *a && n + 1 < cap; a++)
        err[n++] = *a;
    for (; b && *b && n + 1 < cap; b++)
        err[n++] = *b;
    if (cap)
        err[n] = 0;
}

static int terminated(const char *s, unsigned cap)
{
    for (unsigned i = 0; i < cap; i++)
        if (!s[i])
            return 1;
    return 0;
}

int cb_d_config_check(const cb_d_config *c, char *err, unsigned errcap)
{
    for (unsigned i = 0; i < 16; i++)
        if (c->magic[i] != CB_D_MAGIC[i]) {
            say(err, errcap, "embedded configuration: bad magic (the binary is damaged)", 0);
            return -1;
        }
    if (c->size != sizeof(cb_d_config)) {
        say(err, errcap, "embedded configuration: size field does not match this loader", 0);
        return -1;
    }
    if (!(c->flags & CB_D_FLAG_FILLED)) {
        say(err, errcap, "no configuration embedded: write one with `cloudboot build --path d "
                         "--registry H:P --repo R --tag T`", 0);
        return -1;
    }
    if (!terminated(c->registry, sizeof c->registry) ||
        !terminated(c->repository, sizeof c->repository) ||
        !terminated(c->reference, sizeof c->reference) ||
        !terminated(c->cmdline, sizeof c->cmdline)) {
        say(err, errcap, "embedded configuration: a field is not NUL-terminated", 0);
        return -1;
    }
    if (!c->registry[0] || !c->repository[0] || !c->reference[0]) {
        say(err, errcap, "embedded configuration: registry, repository and tag/digest are all "
                         "required", 0);
        return -1;
    }
    return 0;
}

const cb_d_config *cb_d_config_get(char *err, unsigned errcap)
{
    const cb_d_config *c = &cb_d_embedded_config;
    /* Launder the pointer: the optimiser must read what the file holds. */
    __asm__ volatile("" : "+r"(c));
    return cb_d_config_check(c, err, errcap) ? 0 : c;
}
