/*
 * fuzz_args.c -- libFuzzer target for the relay's argv validator and the engine
 * argv and environment it builds.
 *
 * The input is split on NUL bytes into argv (the first byte picks which options the
 * policy allows). On every accepted command line it checks the promises the relay
 * relies on: -d is present and valid, no value that the engine could read as an
 * option starts with '-', and the engine's argv starts interpreter -I -S entry. The
 * -d name then goes through a username_format picked by the first byte: the result
 * is a valid user name or no user, and %Lu gives the name lower-cased, nothing else.
 * Then ms_user_names with a recipient_delimiter picked by the first byte: the detail
 * stripper never lengthens a name nor touches what follows the last '@', and both
 * names are valid user names (and the stripped name did not start with a delimiter)
 * or both are empty (no user); never a template error.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay_rules.h"

#define MAX_FUZZ_ARGS 80

static const char *const formats[] = {
    "%u", "%Lu", "%n", "%Ln", "%Ln@%Ld", "%Ln@example.org", "%d%Lu", "%u%u",
};
static const char *const delimiters[] = {"+", "+-", "_.=", "X"};

static void check_names(struct ms_policy *pol, const char *fmt, const char *delims,
                        const char *d)
{
    char lookup[MS_USER_MAX + 1], engine[MS_USER_MAX + 1], bare[MS_USER_MAX + 1], err[256];
    const char *at = strrchr(d, '@');
    int n;

    n = ms_strip_detail(delims, d, bare, sizeof(bare));
    if (n < 0 || (size_t) n > strlen(d) || (size_t) n != strlen(bare))
        abort();
    if (at != NULL && strcmp(bare + n - strlen(at), at) != 0)
        abort();                  /* the domain is never cut into */
    memcpy(pol->username_format, fmt, strlen(fmt) + 1);
    memcpy(pol->recipient_delimiter, delims, strlen(delims) + 1);
    switch (ms_user_names(pol, d, lookup, engine, sizeof(lookup), err, sizeof(err))) {
    case 1:
        if (!ms_user_is_valid(lookup) || !ms_user_is_valid(engine)
            || strchr(delims, bare[0]) != NULL)
            abort();
        break;
    case 0:
        if (lookup[0] != '\0' || engine[0] != '\0')
            abort();
        break;
    default:
        abort();
    }
    pol->recipient_delimiter[0] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ms_policy pol;
    static char buf[8192], env_buf[MS_ENV_BUF];
    char *argv[MAX_FUZZ_ARGS + 1], *env[MS_ENV_MAX + 1], *caller_env[3], err[256];
    char user[MS_USER_MAX + 1];
    const char *fmt;
    const char *engine[4 + 2 * 7 + 2 * MS_MAX_SETTINGS + 4 + 1];
    struct ms_args args;
    struct ms_target t;
    int argc = 0, n, i;
    size_t start = 0, k;

    if (size < 1 || size >= sizeof(buf))
        return 0;
    memset(&pol, 0, sizeof(pol));
    pol.caller_config = data[0] & 1;
    pol.caller_mail_path = (data[0] >> 1) & 1;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    for (k = 0; k < size && argc < MAX_FUZZ_ARGS; k++) {
        if (buf[k] == '\0') {
            argv[argc++] = buf + start;
            start = k + 1;
        }
        if (k == size - 1)
            break;
    }
    argv[argc] = NULL;
    if (ms_args_parse(argc, argv, &pol, &args, err, sizeof(err)) != MS_ARGS_OK)
        return 0;
    if (args.user == NULL || !ms_user_is_valid(args.user))
        abort();
    fmt = formats[(data[0] >> 2) % (sizeof(formats) / sizeof(formats[0]))];
    switch (ms_username_format(fmt, args.user, user, sizeof(user), err, sizeof(err))) {
    case 1:
        if (!ms_user_is_valid(user) || strlen(user) > MS_USER_MAX)
            abort();
        if (strcmp(fmt, "%Lu") == 0) {
            if (strlen(user) != strlen(args.user))
                abort();
            for (k = 0; user[k] != '\0'; k++) {
                char want = args.user[k] >= 'A' && args.user[k] <= 'Z'
                            ? (char) (args.user[k] - 'A' + 'a') : args.user[k];
                if (user[k] != want)
                    abort();
            }
        }
        break;
    case 0:
        if (user[0] != '\0')
            abort();
        break;
    default:
        abort();              /* every template above is one the relay knows */
    }
    check_names(&pol, fmt, delimiters[(data[0] >> 5) % (sizeof(delimiters) /
                                                       sizeof(delimiters[0]))], args.user);
    memset(pol.username_format, 0, sizeof(pol.username_format));
    if ((args.config && !pol.caller_config) || (args.n_settings && !pol.caller_config)
        || (args.mail_path && !pol.caller_mail_path))
        abort();
    n = ms_args_engine_argv(&args, "/usr/bin/python3", "/entry", engine,
                            sizeof(engine) / sizeof(engine[0]));
    if (n < 6 || strcmp(engine[1], "-I") != 0 || strcmp(engine[2], "-S") != 0
        || engine[n] != NULL)
        abort();
    for (i = 5; i < n; i++)
        if (engine[i - 1][0] == '-' && strchr("darfcmpo", engine[i - 1][1]) != NULL
            && engine[i - 1][2] == '\0' && engine[i][0] == '-')
            abort();      /* a value the engine could take for an option */
    /* The environment built for this command line, with a hostile caller env. */
    memset(&t, 0, sizeof(t));
    memcpy(t.user, args.user, strlen(args.user) + 1);
    t.uid = t.gid = 1000;
    memcpy(t.home, "/home/u", 8);
    t.groups[0] = 1000;
    t.n_groups = 1;
    caller_env[0] = (char *) "LD_PRELOAD=/x.so";
    caller_env[1] = args.sender ? (char *) "SENDER=x" : (char *) "TZ=UTC";
    caller_env[2] = NULL;
    n = ms_env_build(caller_env, &pol, args.keep_env, &t, env_buf, sizeof(env_buf), env,
                     MS_ENV_MAX + 1, err, sizeof(err));
    for (i = 0; i < n; i++)
        if (strncmp(env[i], "LD_", 3) == 0)
            abort();
    return 0;
}
