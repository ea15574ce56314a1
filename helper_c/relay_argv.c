/*
 * relay_argv.c -- the dovecot-lda command line the relay accepts, and the canonical
 * argv it gives the engine.
 *
 * What it does: ms_args_parse reads argv getopt-style as dovecot-lda does (-d -a -r
 * -f -m -c -o -p with values, -n -s -e -k flags), validating every value;
 * ms_args_engine_argv re-emits it as "interpreter -I -S entry" and one option and one
 * value per element.
 *
 * Errors: MS_ARGS_USAGE (64) for anything that is not such a command line,
 * MS_ARGS_DENIED (77) for -c/-o without caller_config = yes and -p without
 * caller_mail_path = yes: what the caller did wrong.
 *
 * Security notes: argv is the caller's. argc is bounded (MS_MAX_ARGS), argc 0 is
 * refused (CVE-2021-4034), every value is bounded and free of control characters, no
 * value the engine could read as an option starts with '-', an option given twice is
 * an error (never "the last one wins"), and no positional argument exists.
 */
#include "relay_common.h"
#include "relay_rules.h"

#include <string.h>

int ms_address_is_valid(const char *s)
{
    size_t n;

    if (s == NULL)
        return 0;
    n = strnlen(s, MS_ADDRESS_MAX + 1);
    if (n > MS_ADDRESS_MAX || ms_has_control(s, n))
        return 0;
    return n == 0 || s[0] != '-';
}

static int mailbox_is_valid(const char *s)
{
    size_t n = strnlen(s, MS_MAILBOX_MAX + 1);

    if (n > MS_MAILBOX_MAX || ms_has_control(s, n))
        return 0;
    return n == 0 || s[0] != '-';
}

static int setting_is_valid(const char *s)
{
    size_t n = strnlen(s, MS_SETTING_MAX + 1), i;
    const char *eq = memchr(s, '=', n);

    if (n > MS_SETTING_MAX || eq == NULL || eq == s || ms_has_control(s, n))
        return 0;
    for (i = 0; s + i < eq; i++) {
        int c = (unsigned char) s[i];
        if (!ms_is_alpha(c) && !ms_is_digit(c) && c != '_' && c != '/' && c != '.' && c != '-')
            return 0;
    }
    return s[0] != '-';
}

/* Store an option's value once; a second -d (or -a, ...) is a usage error. */
static int store_once(const char **slot, const char *value, char opt, char *err,
                      size_t errlen)
{
    if (*slot != NULL) {
        ms_set_err(err, errlen, "usage: -%c given twice", opt);
        return MS_ARGS_USAGE;
    }
    *slot = value;
    return MS_ARGS_OK;
}

static int take_value(struct ms_args *a, const struct ms_policy *pol, char opt,
                      const char *v, char *err, size_t errlen)
{
    switch (opt) {
    case 'd':
        if (!ms_user_is_valid(v)) {
            ms_set_err(err, errlen, "usage: -d: not a valid user name");
            return MS_ARGS_USAGE;
        }
        return store_once(&a->user, v, opt, err, errlen);
    case 'a':
    case 'r':
    case 'f':
        if (!ms_address_is_valid(v) || (opt != 'f' && v[0] == '\0')) {
            ms_set_err(err, errlen, "usage: -%c: not a valid address", opt);
            return MS_ARGS_USAGE;
        }
        return store_once(opt == 'a' ? &a->orig_rcpt : opt == 'r' ? &a->final_rcpt
                                                                  : &a->sender,
                          v, opt, err, errlen);
    case 'm':
        if (!mailbox_is_valid(v)) {
            ms_set_err(err, errlen, "usage: -m: not a valid mailbox name");
            return MS_ARGS_USAGE;
        }
        return store_once(&a->mailbox, v, opt, err, errlen);
    case 'c':
        /* A caller-chosen configuration could aim delivery anywhere. */
        if (!pol->caller_config) {
            ms_set_err(err, errlen, "caller-config: -c is not allowed by the policy");
            return MS_ARGS_DENIED;
        }
        if (!ms_path_is_valid(v, 0)) {
            ms_set_err(err, errlen, "usage: -c: not an absolute path");
            return MS_ARGS_USAGE;
        }
        return store_once(&a->config, v, opt, err, errlen);
    case 'o':
        if (!pol->caller_config) {
            ms_set_err(err, errlen, "caller-config: -o is not allowed by the policy");
            return MS_ARGS_DENIED;
        }
        if (!setting_is_valid(v)) {
            ms_set_err(err, errlen, "usage: -o: expected key=value");
            return MS_ARGS_USAGE;
        }
        if (a->n_settings >= MS_MAX_SETTINGS) {
            ms_set_err(err, errlen, "usage: more than %d -o", MS_MAX_SETTINGS);
            return MS_ARGS_USAGE;
        }
        a->settings[a->n_settings++] = v;
        return MS_ARGS_OK;
    case 'p':
        if (!pol->caller_mail_path) {
            ms_set_err(err, errlen, "caller-mail-path: -p is not allowed by the policy");
            return MS_ARGS_DENIED;
        }
        if (!ms_path_is_valid(v, 0)) {
            ms_set_err(err, errlen, "usage: -p: not an absolute path");
            return MS_ARGS_USAGE;
        }
        return store_once(&a->mail_path, v, opt, err, errlen);
    }
    ms_set_err(err, errlen, "usage: unknown option -%c", opt);
    return MS_ARGS_USAGE;
}

int ms_args_parse(int argc, char *const argv[], const struct ms_policy *pol,
                  struct ms_args *a, char *err, size_t errlen)
{
    int i;

    memset(a, 0, sizeof(*a));
    /* argc 0 (argv[0] NULL) is how CVE-2021-4034 began: refuse it outright. */
    if (argc < 1 || argv == NULL || argv[0] == NULL) {
        ms_set_err(err, errlen, "usage: empty argument vector");
        return MS_ARGS_USAGE;
    }
    if (argc > MS_MAX_ARGS) {
        ms_set_err(err, errlen, "usage: more than %d arguments", MS_MAX_ARGS);
        return MS_ARGS_USAGE;
    }
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        size_t j;

        if (arg == NULL)
            break;
        if (arg[0] != '-' || arg[1] == '\0' || strcmp(arg, "--") == 0) {
            ms_set_err(err, errlen, "usage: unexpected argument (dovecot-lda takes options only)");
            return MS_ARGS_USAGE;
        }
        /* getopt(3) style, as dovecot-lda: "-e -k" == "-ek", "-d u" == "-du". */
        for (j = 1; arg[j] != '\0'; j++) {
            char opt = arg[j];
            int rc;

            if (opt == 'n' || opt == 's' || opt == 'e' || opt == 'k') {
                int *flag = opt == 'n' ? &a->no_create : opt == 's' ? &a->subscribe
                          : opt == 'e' ? &a->reject_stderr : &a->keep_env;
                *flag = 1;
                continue;
            }
            if (strchr("adrfmcop", opt) == NULL) {
                if ((unsigned char) opt >= 0x21 && (unsigned char) opt <= 0x7e)
                    ms_set_err(err, errlen, "usage: unknown option -%c", opt);
                else
                    ms_set_err(err, errlen, "usage: unknown option");
                return MS_ARGS_USAGE;
            }
            if (arg[j + 1] != '\0') {
                rc = take_value(a, pol, opt, arg + j + 1, err, errlen);
            } else if (i + 1 < argc && argv[i + 1] != NULL) {
                rc = take_value(a, pol, opt, argv[++i], err, errlen);
            } else {
                ms_set_err(err, errlen, "usage: -%c needs a value", opt);
                return MS_ARGS_USAGE;
            }
            if (rc != MS_ARGS_OK)
                return rc;
            break;
        }
    }
    if (a->user == NULL) {
        ms_set_err(err, errlen, "usage: -d <user> is required (the relay delivers to a named user)");
        return MS_ARGS_USAGE;
    }
    return MS_ARGS_OK;
}

int ms_args_engine_argv(const struct ms_args *a, const char *interpreter, const char *entry,
                        const char **out, size_t outmax)
{
    size_t n = 0, i;
    const struct { char opt; const char *value; } valued[] = {
        {'d', a->user}, {'a', a->orig_rcpt}, {'r', a->final_rcpt}, {'f', a->sender},
        {'c', a->config}, {'m', a->mailbox}, {'p', a->mail_path},
    };
    static const char *const opt_str[] = {"-d", "-a", "-r", "-f", "-c", "-m", "-p"};
    /* interpreter -I -S entry + 2 per value + 2 per -o + 4 flags + NULL */
    size_t need = 4 + 2 * 7 + 2 * a->n_settings + 4 + 1;

    if (outmax < need || a->n_settings > MS_MAX_SETTINGS)
        return -1;
    out[n++] = interpreter;
    /* -I: ignore PYTHON* and the user site; -S: no site module (docs/architecture.md,
     * "Start-up is the speed"). */
    out[n++] = "-I";
    out[n++] = "-S";
    out[n++] = entry;
    for (i = 0; i < sizeof(valued) / sizeof(valued[0]); i++) {
        if (valued[i].value != NULL) {
            out[n++] = opt_str[i];
            out[n++] = valued[i].value;
        }
    }
    for (i = 0; i < a->n_settings; i++) {
        out[n++] = "-o";
        out[n++] = a->settings[i];
    }
    if (a->no_create)
        out[n++] = "-n";
    if (a->subscribe)
        out[n++] = "-s";
    if (a->reject_stderr)
        out[n++] = "-e";
    if (a->keep_env)
        out[n++] = "-k";
    out[n] = NULL;
    return (int) n;
}
