/*
 * relay_env.c -- the engine's environment, built from an allow-list.
 *
 * What it does: ms_env_build writes PATH (fixed), HOME, USER, LOGNAME and the relay's
 * announcement (MAILSLOT_RELAY_USER, _HOME, _UID, _GID, _GROUPS), then a TZ that
 * names a zone, the policy's pass_env variables and, with -k, the MTA's delivery
 * variables (SENDER, RECIPIENT, ...), each only if the caller set it and its value is
 * bounded and free of control characters.
 *
 * Errors: -1 "environment: ..." when the bounded buffers are full (the relay: 75).
 *
 * Security notes: the caller's environment is data. ms_env_name_forbidden is a hard
 * deny list (the dynamic loader's and glibc's variables, the interpreter's, the
 * shell's, locale and resolver knobs, the relay's own MAILSLOT_*) that no policy can
 * override; fixed values are written first so nothing the caller sends shadows them.
 */
#include "relay_common.h"
#include "relay_rules.h"

#include <stdio.h>
#include <string.h>

/* The engine's PATH: fixed, never the caller's (SECURITY.md, "The relay, step by
 * step", step 6). */
#define MS_FIXED_PATH "/usr/local/bin:/usr/bin:/bin"

/* The variables MTAs export for a delivery (Postfix local(8) and pipe(8)): what -k
 * keeps. None of them changes how Python or the dynamic loader behave. */
static const char *const mta_env_names[] = {
    "ORIGINAL_RECIPIENT", "RECIPIENT", "SENDER", "EXTENSION", "DOMAIN", "LOCAL",
    "CLIENT_ADDRESS", "CLIENT_HELO", "CLIENT_HOSTNAME", "CLIENT_PROTOCOL",
    "SASL_METHOD", "SASL_SENDER", "SASL_USERNAME", NULL,
};

/* Names no caller may pass, whatever the policy or -k say: the dynamic loader's and
 * glibc's (glibc's unsecvars.h list), the interpreter's, the shell's, locale and
 * resolver knobs, and the relay's own announcement variables. */
static const char *const forbidden_prefixes[] = {
    "LD_", "PYTHON", "MAILSLOT_", "MALLOC_", "GLIBC_", "GCONV", "BASH_FUNC_", "DYLD_",
    "LC_", "PERL", "RUBY", "NODE_", "OPENSSL_", "SSL_", "GIT_", "KRB5", "MAIL_",
    "XDG_", "GNUTLS_", "GTK_", "QT_", "ASAN_", "UBSAN_", "LSAN_", "MSAN_", "TSAN_",
    NULL,
};
static const char *const forbidden_names[] = {
    "GETCONF_DIR", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH", "NIS_PATH", "NLSPATH",
    "RESOLV_HOST_CONF", "RES_OPTIONS", "TMPDIR", "TZDIR", "LANG", "LANGUAGE", "IFS",
    "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4", "CDPATH", "PATH", "HOME",
    "USER", "LOGNAME", "SHELL", "TERMINFO", "TERMCAP", "TZ", "LIBRARY_PATH",
    "CURL_CA_BUNDLE", "SENDMAIL", "EDITOR", "VISUAL", "PAGER", NULL,
};


int ms_env_name_forbidden(const char *name)
{
    size_t i, n;

    if (name == NULL)
        return 1;
    n = strnlen(name, MS_ENV_NAME_MAX + 1);
    if (!ms_env_name_is_valid(name, n))
        return 1;
    for (i = 0; forbidden_prefixes[i] != NULL; i++)
        if (strncmp(name, forbidden_prefixes[i], strlen(forbidden_prefixes[i])) == 0)
            return 1;
    for (i = 0; forbidden_names[i] != NULL; i++)
        if (strcmp(name, forbidden_names[i]) == 0)
            return 1;
    return 0;
}

/* ---- environment --------------------------------------------------------------- */

struct env_out {
    char *buf;
    size_t buflen, used;
    char **out;
    size_t outmax, n;
};

static int env_has(const struct env_out *e, const char *name, size_t nlen)
{
    size_t i;

    for (i = 0; i < e->n; i++)
        if (strncmp(e->out[i], name, nlen) == 0 && e->out[i][nlen] == '=')
            return 1;
    return 0;
}

static int env_add(struct env_out *e, const char *name, const char *value, char *err,
                   size_t errlen)
{
    size_t nlen = strlen(name), vlen = strlen(value);
    char *p;

    if (e->n + 1 >= e->outmax || e->used + nlen + 1 + vlen + 1 > e->buflen) {
        ms_set_err(err, errlen, "environment: more than fits the relay's bounds");
        return -1;
    }
    p = e->buf + e->used;
    memcpy(p, name, nlen);
    p[nlen] = '=';
    memcpy(p + nlen + 1, value, vlen + 1);
    e->used += nlen + 1 + vlen + 1;
    e->out[e->n++] = p;
    e->out[e->n] = NULL;
    return 0;
}

/* The caller's value of name, from the saved environ (first occurrence, as getenv). */
static const char *caller_value(char *const env[], const char *name)
{
    size_t nlen = strlen(name), i;

    if (env == NULL)
        return NULL;
    for (i = 0; env[i] != NULL; i++)
        if (strncmp(env[i], name, nlen) == 0 && env[i][nlen] == '=')
            return env[i] + nlen + 1;
    return NULL;
}

static int value_is_passable(const char *v)
{
    size_t n = strnlen(v, MS_ENV_VALUE_MAX + 1);

    return n <= MS_ENV_VALUE_MAX && !ms_has_control(v, n);
}

/* TZ names a zone under glibc's zoneinfo directory, never a file of the caller's
 * choosing: no absolute path (also not after the ':' prefix), no "..". */
static int tz_is_safe(const char *v)
{
    size_t n = strnlen(v, 65), i;

    if (n == 0 || n > 64 || strstr(v, "..") != NULL || v[0] == '/'
        || (v[0] == ':' && v[1] == '/'))
        return 0;
    for (i = 0; i < n; i++) {
        int c = (unsigned char) v[i];
        if (!ms_is_alpha(c) && !ms_is_digit(c) && strchr("_+-:,./<>", c) == NULL)
            return 0;
    }
    return 1;
}

static int pass_from_caller(struct env_out *e, char *const caller_env[], const char *name,
                            char *err, size_t errlen)
{
    const char *v;

    /* Defence in depth: the policy parser already refused these names. */
    if (ms_env_name_forbidden(name) || env_has(e, name, strlen(name)))
        return 0;
    v = caller_value(caller_env, name);
    if (v == NULL || !value_is_passable(v))
        return 0;
    return env_add(e, name, v, err, errlen);
}

int ms_env_build(char *const caller_env[], const struct ms_policy *pol, int keep_env,
                 const struct ms_target *t, char *buf, size_t buflen, char **out,
                 size_t outmax, char *err, size_t errlen)
{
    struct env_out e = {buf, buflen, 0, out, outmax, 0};
    char num[32], groups[MS_MAX_TARGET_GROUPS * 11 + 1];
    size_t i, g = 0;
    const char *tz;

    if (outmax < 1 || buflen < 1) {
        ms_set_err(err, errlen, "environment: no room");
        return -1;
    }
    out[0] = NULL;
    /* Fixed values first: nothing the caller sends can shadow them. */
    if (env_add(&e, "PATH", MS_FIXED_PATH, err, errlen) < 0
        || env_add(&e, "HOME", t->home, err, errlen) < 0
        || env_add(&e, "USER", t->user, err, errlen) < 0
        || env_add(&e, "LOGNAME", t->user, err, errlen) < 0
        || env_add(&e, "MAILSLOT_RELAY_USER", t->user, err, errlen) < 0
        || env_add(&e, "MAILSLOT_RELAY_HOME", t->home, err, errlen) < 0)
        return -1;
    (void) snprintf(num, sizeof(num), "%lu", t->uid);
    if (env_add(&e, "MAILSLOT_RELAY_UID", num, err, errlen) < 0)
        return -1;
    (void) snprintf(num, sizeof(num), "%lu", t->gid);
    if (env_add(&e, "MAILSLOT_RELAY_GID", num, err, errlen) < 0)
        return -1;
    groups[0] = '\0';
    for (i = 0; i < t->n_groups && i < MS_MAX_TARGET_GROUPS; i++) {
        int w = snprintf(groups + g, sizeof(groups) - g, "%s%lu", i ? "," : "",
                         t->groups[i]);
        if (w < 0 || (size_t) w >= sizeof(groups) - g) {
            ms_set_err(err, errlen, "environment: group list too long");
            return -1;
        }
        g += (size_t) w;
    }
    if (env_add(&e, "MAILSLOT_RELAY_GROUPS", groups, err, errlen) < 0)
        return -1;
    tz = caller_value(caller_env, "TZ");
    if (tz != NULL && tz_is_safe(tz) && env_add(&e, "TZ", tz, err, errlen) < 0)
        return -1;
    for (i = 0; i < pol->n_pass_env; i++)
        if (pass_from_caller(&e, caller_env, pol->pass_env[i], err, errlen) < 0)
            return -1;
    if (keep_env)
        for (i = 0; mta_env_names[i] != NULL; i++)
            if (pass_from_caller(&e, caller_env, mta_env_names[i], err, errlen) < 0)
                return -1;
    return (int) e.n;
}
