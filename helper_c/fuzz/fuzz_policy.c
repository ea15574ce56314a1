/*
 * fuzz_policy.c -- libFuzzer target for the relay's policy parser.
 *
 * Feeds arbitrary bytes to ms_policy_parse. Besides memory safety (ASan/UBSan), it
 * checks the parser's promises on every accepted input: no range contains 0, every
 * path is absolute, the resolver's companion keys are present.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "relay_rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ms_policy pol;
    char err[256];
    size_t i;

    if (ms_policy_parse((const char *) data, size, &pol, err, sizeof(err)) != 0)
        return 0;
    for (i = 0; i < pol.n_target_uids; i++)
        if (pol.target_uids[i].lo == 0 || pol.target_uids[i].lo > pol.target_uids[i].hi)
            abort();
    for (i = 0; i < pol.n_target_gids; i++)
        if (pol.target_gids[i].lo == 0 || pol.target_gids[i].lo > pol.target_gids[i].hi)
            abort();
    if (ms_range_contains(pol.target_uids, pol.n_target_uids, 0))
        abort();
    if (!ms_path_is_valid(pol.interpreter, 0) || !ms_path_is_valid(pol.entry, 0))
        abort();
    if (pol.resolver == MS_RESOLVE_PASSWD_FILE && !ms_path_is_valid(pol.passwd_file, 0))
        abort();
    for (i = 0; i < pol.n_pass_env; i++)
        if (ms_env_name_forbidden(pol.pass_env[i]))
            abort();
    return 0;
}
