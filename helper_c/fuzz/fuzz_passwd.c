/*
 * fuzz_passwd.c -- libFuzzer target for the relay's target parsers: the Dovecot
 * passwd-file scanner and the lookup child's one-line answer (OK\tuid=N\tgid=N\thome=P).
 *
 * The first byte picks the parser. Promise checked: whatever is accepted has an
 * absolute home and exactly one group, its gid (range checks come after, in C).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "relay_rules.h"

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
    return 0;
}
