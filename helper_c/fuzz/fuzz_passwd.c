/*
 * fuzz_passwd.c -- libFuzzer target for the relay's target parsers: the Dovecot
 * passwd-file scanner and the lookup child's one-line answer (OK\tuid=N\tgid=N\thome=P).
 *
 * The first byte picks the parser. Promise checked: whatever is accepted has an
 * absolute home and exactly one group, its gid (range checks come after, in C).
 * Then the engine's groups (ms_target_groups) from groups and extra gids taken from
 * the input: the primary gid comes first, no gid twice, every other one is both a
 * group of the target and named extra, never more than MS_MAX_TARGET_GROUPS.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay_rules.h"

/* Small gids from the input bytes, so that groups, extras and the gid collide. */
static void check_groups(const uint8_t *data, size_t size)
{
    static struct ms_target t;
    unsigned long found[MS_MAX_TARGET_GROUPS + 8], extra[MS_MAX_EXTRA_GROUPS];
    size_t n_found, n_extra, i, j, k;

    if (size < 3)
        return;
    memset(&t, 0, sizeof(t));
    t.gid = data[0] % 16;
    n_found = data[1] % (MS_MAX_TARGET_GROUPS + 1);
    n_extra = data[2] % (MS_MAX_EXTRA_GROUPS + 1);
    for (i = 0; i < n_found; i++)
        found[i] = t.groups[i] = 3 + i < size ? data[3 + i] % 16 : i;
    t.n_groups = n_found;
    for (i = 0; i < n_extra; i++)
        extra[i] = 3 + n_found + i < size ? data[3 + n_found + i] % 16 : i;
    ms_target_groups(&t, extra, n_extra);
    if (t.n_groups < 1 || t.n_groups > MS_MAX_TARGET_GROUPS || t.groups[0] != t.gid)
        abort();
    for (i = 1; i < t.n_groups; i++) {
        int in_found = 0, in_extra = 0;
        for (j = 0; j < i; j++)
            if (t.groups[j] == t.groups[i])
                abort();                          /* a gid twice */
        for (k = 0; k < n_found; k++)
            in_found |= found[k] == t.groups[i];
        for (k = 0; k < n_extra; k++)
            in_extra |= extra[k] == t.groups[i];
        if (!in_found || !in_extra)
            abort();                              /* a group nobody allowed */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ms_target t;
    char err[256];
    int rc;

    if (size < 1)
        return 0;
    if (data[0] & 1)
        rc = ms_passwd_file_find((const char *) data + 1, size - 1, "u@d", &t, err, sizeof(err))
             == 1 ? 0 : -1;
    else
        rc = ms_lookup_answer_parse((const char *) data + 1, size - 1, &t, err, sizeof(err));
    if (rc == 0 && (!ms_path_is_valid(t.home, 1) || t.n_groups != 1 || t.groups[0] != t.gid))
        abort();
    check_groups(data, size);
    return 0;
}
