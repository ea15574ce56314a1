/*
 * fuzz_policy.c -- libFuzzer target for the relay's policy parser.
 *
 * Feeds arbitrary bytes to ms_policy_parse. Besides memory safety (ASan/UBSan), it
 * checks the parser's promises on every accepted input: no range contains 0, every
 * path is absolute, the resolver's companion keys are present, and the policy's
 * username_format is a template the formatter knows, whose expansion of a few names
 * is either a valid user name or no user at all (never a template error). The same
 * holds for the names ms_user_names makes with the policy's recipient_delimiter,
 * which is empty or a value its checker accepts.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay_rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"Bob", "bob@Example.ORG", "@x", "a@b@c", "x@.y",
                                        "Bob+x@y", "+x", "a-b_c.d=e+f@g+h"};
    static struct ms_policy pol;
    char err[256], user[MS_USER_MAX + 1], engine[MS_USER_MAX + 1];
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
    if (ms_username_format_check(pol.username_format, err, sizeof(err)) != 0)
        abort();
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int rc = ms_username_format(pol.username_format, names[i], user, sizeof(user), err,
                                    sizeof(err));
        if (rc < 0 || (rc == 1 && (!ms_user_is_valid(user) || strlen(user) > MS_USER_MAX))
            || (rc == 0 && user[0] != '\0'))
            abort();
        rc = ms_user_names(&pol, names[i], user, engine, sizeof(user), err, sizeof(err));
        if (rc < 0 || (rc == 1 && (!ms_user_is_valid(user) || !ms_user_is_valid(engine)))
            || (rc == 0 && (user[0] != '\0' || engine[0] != '\0')))
            abort();
    }
    if (pol.recipient_delimiter[0] != '\0'
        && ms_recipient_delimiter_check(pol.recipient_delimiter, err, sizeof(err)) != 0)
        abort();
    return 0;
}
