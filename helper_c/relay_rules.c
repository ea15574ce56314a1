/*
 * relay_rules.c -- the pure rules of mailslot-relay (see relay_rules.h).
 *
 * What it does: parses the policy file, validates a dovecot-lda command line against
 * it, strips a recipient_delimiter detail from the -d name (user+detail@domain, the
 * engine's rule byte for byte) and makes it canonical with the policy's
 * username_format (the subset of Dovecot's auth_username_format the relay knows:
 * %u %n %d, L for lower case),
 * checks ids against ranges, parses a Dovecot passwd-file and the lookup child's
 * answer, and builds the engine's environment from an allow-list.
 *
 * What it trusts: nothing. Every input here may come from the caller (argv, environ)
 * or from a file whose content is parsed before being believed. Buffers are bounded
 * by the limits in relay_rules.h and never read past the length given; no function
 * allocates, makes a system call or keeps state between calls.
 *
 * Diagnostics: errors are one line, "<rule>: <detail>", written with snprintf into
 * the caller's buffer; the rule names are the ones SECURITY.md lists.
 */
#include "relay_rules.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The engine's PATH: fixed, never the caller's (SECURITY.md, "The relay, step by step"). */
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

/* Policy keys, each with its bit in ms_policy.seen. */
enum {
    K_CALLER_GROUPS, K_TARGET_UIDS, K_TARGET_GIDS, K_INTERPRETER, K_ENTRY, K_RESOLVER,
    K_PASSWD_FILE, K_LOOKUP_USER, K_LOOKUP_ENTRY, K_PASS_ENV, K_NO_NEW_PRIVS,
    K_CALLER_CONFIG, K_CALLER_MAIL_PATH, K_USERNAME_FORMAT, K_RECIPIENT_DELIMITER, K_COUNT
};
static const char *const policy_keys[K_COUNT] = {
    "caller_groups", "target_uids", "target_gids", "interpreter", "entry", "resolver",
    "passwd_file", "lookup_user", "lookup_entry", "pass_env", "no_new_privs",
    "caller_config", "caller_mail_path", "username_format", "recipient_delimiter",
};

/* username_format when the policy does not name one: the -d name byte for byte, as
 * every relay before the key existed compared it (see relay.policy.example for why
 * this is the default rather than Dovecot's "%Lu"). */
#define MS_USERNAME_FORMAT_DEFAULT "%u"

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    (void) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Copy n bytes of s into dst (size dstsize) with a NUL; 0, or -1 if it does not fit. */
static int copy_bounded(char *dst, size_t dstsize, const char *s, size_t n)
{
    if (n >= dstsize)
        return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_space(int c) { return c == ' ' || c == '\t'; }

/* A decimal id: 1 to 10 digits, no sign, value <= MS_ID_MAX. */
static int parse_id(const char *s, size_t n, unsigned long *out)
{
    unsigned long v = 0;
    size_t i;

    if (n == 0 || n > 10)
        return -1;
    for (i = 0; i < n; i++) {
        if (!is_digit((unsigned char) s[i]))
            return -1;
        v = v * 10 + (unsigned long) (s[i] - '0');
    }
    if (v > MS_ID_MAX)
        return -1;
    *out = v;
    return 0;
}

int ms_path_is_valid(const char *s, int allow_space)
{
    size_t i, n;

    if (s == NULL || s[0] != '/')
        return 0;
    n = strnlen(s, MS_PATH_MAX);
    if (n >= MS_PATH_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c == ' ' ? !allow_space : (c < 0x21 || c > 0x7e))
            return 0;
        if (c == '/' && i + 1 < n) {
            /* No empty, "." or ".." component: the path means what it says. */
            const char *next = s + i + 1;
            size_t rest = n - i - 1;
            if (next[0] == '/')
                return 0;
            if (next[0] == '.' && (rest == 1 || next[1] == '/'))
                return 0;
            if (next[0] == '.' && next[1] == '.' && (rest == 2 || next[2] == '/'))
                return 0;
        }
    }
    return 1;
}

/* A group or user name in the policy: [A-Za-z0-9_.-], not starting with '-'. */
static int name_is_valid(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > MS_NAME_MAX || s[0] == '-')
        return 0;
    for (i = 0; i < n; i++) {
        int c = (unsigned char) s[i];
        if (!is_alpha(c) && !is_digit(c) && c != '_' && c != '.' && c != '-')
            return 0;
    }
    return 1;
}

/* An environment variable name: [A-Za-z_][A-Za-z0-9_]*, at most MS_ENV_NAME_MAX. */
static int env_name_is_valid(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > MS_ENV_NAME_MAX || is_digit((unsigned char) s[0]))
        return 0;
    for (i = 0; i < n; i++) {
        int c = (unsigned char) s[i];
        if (!is_alpha(c) && !is_digit(c) && c != '_')
            return 0;
    }
    return 1;
}

int ms_env_name_forbidden(const char *name)
{
    size_t i, n;

    if (name == NULL)
        return 1;
    n = strnlen(name, MS_ENV_NAME_MAX + 1);
    if (!env_name_is_valid(name, n))
        return 1;
    for (i = 0; forbidden_prefixes[i] != NULL; i++)
        if (strncmp(name, forbidden_prefixes[i], strlen(forbidden_prefixes[i])) == 0)
            return 1;
    for (i = 0; forbidden_names[i] != NULL; i++)
        if (strcmp(name, forbidden_names[i]) == 0)
            return 1;
    return 0;
}

int ms_range_contains(const struct ms_range *ranges, size_t n, unsigned long id)
{
    size_t i;

    /* Root is never a target, whatever a range says. */
    if (id == 0 || ranges == NULL)
        return 0;
    for (i = 0; i < n && i < MS_MAX_RANGES; i++)
        if (id >= ranges[i].lo && id <= ranges[i].hi)
            return 1;
    return 0;
}

/* Split a comma-separated list; calls item() for each trimmed, non-empty item. */
typedef int (*item_fn)(struct ms_policy *pol, const char *s, size_t n, char *err,
                       size_t errlen, const char *key);

static int for_each_item(struct ms_policy *pol, const char *v, size_t vn, item_fn item,
                         char *err, size_t errlen, const char *key)
{
    size_t start = 0, i;

    for (i = 0; i <= vn; i++) {
        if (i == vn || v[i] == ',') {
            size_t a = start, b = i;
            while (a < b && is_space((unsigned char) v[a]))
                a++;
            while (b > a && is_space((unsigned char) v[b - 1]))
                b--;
            if (a == b) {
                set_err(err, errlen, "policy-value: %s: empty list item", key);
                return -1;
            }
            if (item(pol, v + a, b - a, err, errlen, key) < 0)
                return -1;
            start = i + 1;
        }
    }
    return 0;
}

static int add_group(struct ms_policy *pol, const char *s, size_t n, char *err,
                     size_t errlen, const char *key)
{
    if (!name_is_valid(s, n)) {
        set_err(err, errlen, "policy-value: %s: not a group name", key);
        return -1;
    }
    if (pol->n_caller_groups >= MS_MAX_CALLER_GROUPS) {
        set_err(err, errlen, "policy-value: %s: more than %d groups", key,
                MS_MAX_CALLER_GROUPS);
        return -1;
    }
    (void) copy_bounded(pol->caller_groups[pol->n_caller_groups++], MS_NAME_MAX + 1, s, n);
    return 0;
}

static int add_range(struct ms_range *ranges, size_t *count, const char *s, size_t n,
                     char *err, size_t errlen, const char *key)
{
    const char *dash = memchr(s, '-', n);
    unsigned long lo, hi;

    if (dash == NULL) {
        if (parse_id(s, n, &lo) < 0)
            goto bad;
        hi = lo;
    } else if (parse_id(s, (size_t) (dash - s), &lo) < 0
               || parse_id(dash + 1, n - (size_t) (dash - s) - 1, &hi) < 0) {
        goto bad;
    }
    if (lo == 0) {
        /* uid 0 and gid 0 are never targets: a range may not even name them. */
        set_err(err, errlen, "policy-value: %s: a range may not include 0", key);
        return -1;
    }
    if (lo > hi)
        goto bad;
    if (*count >= MS_MAX_RANGES) {
        set_err(err, errlen, "policy-value: %s: more than %d ranges", key, MS_MAX_RANGES);
        return -1;
    }
    ranges[*count].lo = lo;
    ranges[*count].hi = hi;
    (*count)++;
    return 0;
bad:
    set_err(err, errlen, "policy-value: %s: ranges are N or N-M, 1 <= N <= M <= %lu",
            key, MS_ID_MAX);
    return -1;
}

static int add_uid_range(struct ms_policy *pol, const char *s, size_t n, char *err,
                         size_t errlen, const char *key)
{
    return add_range(pol->target_uids, &pol->n_target_uids, s, n, err, errlen, key);
}

static int add_gid_range(struct ms_policy *pol, const char *s, size_t n, char *err,
                         size_t errlen, const char *key)
{
    return add_range(pol->target_gids, &pol->n_target_gids, s, n, err, errlen, key);
}

static int add_pass_env(struct ms_policy *pol, const char *s, size_t n, char *err,
                        size_t errlen, const char *key)
{
    char name[MS_ENV_NAME_MAX + 1];
    size_t i;

    if (copy_bounded(name, sizeof(name), s, n) < 0 || !env_name_is_valid(s, n)) {
        set_err(err, errlen, "policy-value: %s: not a variable name", key);
        return -1;
    }
    /* The forbidden names stay forbidden even if the administrator lists them. */
    if (ms_env_name_forbidden(name)) {
        set_err(err, errlen, "policy-value: %s: %s may never be passed", key, name);
        return -1;
    }
    for (i = 0; i < pol->n_pass_env; i++)
        if (strcmp(pol->pass_env[i], name) == 0) {
            set_err(err, errlen, "policy-value: %s: %s listed twice", key, name);
            return -1;
        }
    if (pol->n_pass_env >= MS_MAX_PASS_ENV) {
        set_err(err, errlen, "policy-value: %s: more than %d names", key, MS_MAX_PASS_ENV);
        return -1;
    }
    memcpy(pol->pass_env[pol->n_pass_env++], name, n + 1);
    return 0;
}

static int parse_bool(const char *v, size_t n, int *out)
{
    if (n == 3 && memcmp(v, "yes", 3) == 0)
        *out = 1;
    else if (n == 2 && memcmp(v, "no", 2) == 0)
        *out = 0;
    else
        return -1;
    return 0;
}

static int set_path(char *dst, const char *v, size_t n, char *err, size_t errlen,
                    const char *key)
{
    if (copy_bounded(dst, MS_PATH_MAX, v, n) < 0 || !ms_path_is_valid(dst, 0)) {
        dst[0] = '\0';
        set_err(err, errlen, "policy-value: %s: not an absolute path", key);
        return -1;
    }
    return 0;
}

static int apply_key(struct ms_policy *pol, int key, const char *v, size_t n, char *err,
                     size_t errlen)
{
    const char *name = policy_keys[key];

    switch (key) {
    case K_CALLER_GROUPS:
        return for_each_item(pol, v, n, add_group, err, errlen, name);
    case K_TARGET_UIDS:
        return for_each_item(pol, v, n, add_uid_range, err, errlen, name);
    case K_TARGET_GIDS:
        return for_each_item(pol, v, n, add_gid_range, err, errlen, name);
    case K_INTERPRETER:
        return set_path(pol->interpreter, v, n, err, errlen, name);
    case K_ENTRY:
        return set_path(pol->entry, v, n, err, errlen, name);
    case K_PASSWD_FILE:
        return set_path(pol->passwd_file, v, n, err, errlen, name);
    case K_LOOKUP_ENTRY:
        return set_path(pol->lookup_entry, v, n, err, errlen, name);
    case K_RESOLVER:
        if (n == 3 && memcmp(v, "nss", 3) == 0)
            pol->resolver = MS_RESOLVE_NSS;
        else if (n == 11 && memcmp(v, "passwd-file", 11) == 0)
            pol->resolver = MS_RESOLVE_PASSWD_FILE;
        else if (n == 6 && memcmp(v, "lookup", 6) == 0)
            pol->resolver = MS_RESOLVE_LOOKUP;
        else {
            set_err(err, errlen, "policy-value: %s: nss, passwd-file or lookup", name);
            return -1;
        }
        return 0;
    case K_LOOKUP_USER:
        if (!name_is_valid(v, n)) {
            set_err(err, errlen, "policy-value: %s: not a user name", name);
            return -1;
        }
        (void) copy_bounded(pol->lookup_user, sizeof(pol->lookup_user), v, n);
        return 0;
    case K_PASS_ENV:
        return for_each_item(pol, v, n, add_pass_env, err, errlen, name);
    case K_USERNAME_FORMAT:
        if (copy_bounded(pol->username_format, sizeof(pol->username_format), v, n) < 0) {
            set_err(err, errlen, "policy-value: %s: longer than %d bytes", name,
                    MS_USERNAME_FORMAT_MAX);
            return -1;
        }
        /* Refused now, not at delivery: a template the relay cannot expand is a
         * configuration error (exit 75), never a reason to bounce mail. */
        return ms_username_format_check(pol->username_format, err, errlen);
    case K_RECIPIENT_DELIMITER:
        if (copy_bounded(pol->recipient_delimiter, sizeof(pol->recipient_delimiter), v, n)
            < 0) {
            set_err(err, errlen, "policy-value: %s: longer than %d bytes", name,
                    MS_DELIMITER_MAX);
            return -1;
        }
        /* Refused now (exit 75): a delimiter that could cut into the domain ('@') or
         * a template ('%') would make the relay resolve a name nobody meant. */
        return ms_recipient_delimiter_check(pol->recipient_delimiter, err, errlen);
    case K_NO_NEW_PRIVS:
    case K_CALLER_CONFIG:
    case K_CALLER_MAIL_PATH: {
        int b;
        if (parse_bool(v, n, &b) < 0) {
            set_err(err, errlen, "policy-value: %s: yes or no", name);
            return -1;
        }
        if (key == K_NO_NEW_PRIVS)
            pol->no_new_privs = b;
        else if (key == K_CALLER_CONFIG)
            pol->caller_config = b;
        else
            pol->caller_mail_path = b;
        return 0;
    }
    }
    return -1;
}

/* One non-comment line "key = value" (already without its newline). */
static int parse_line(struct ms_policy *pol, const char *line, size_t n, char *err,
                      size_t errlen)
{
    const char *eq;
    size_t kn, vstart, vend;
    int key;

    eq = memchr(line, '=', n);
    if (eq == NULL) {
        set_err(err, errlen, "policy-syntax: expected key = value");
        return -1;
    }
    kn = (size_t) (eq - line);
    while (kn > 0 && is_space((unsigned char) line[kn - 1]))
        kn--;
    vstart = (size_t) (eq - line) + 1;
    while (vstart < n && is_space((unsigned char) line[vstart]))
        vstart++;
    vend = n;
    while (vend > vstart && is_space((unsigned char) line[vend - 1]))
        vend--;
    for (key = 0; key < K_COUNT; key++)
        if (strlen(policy_keys[key]) == kn && memcmp(policy_keys[key], line, kn) == 0)
            break;
    if (key == K_COUNT) {
        set_err(err, errlen, "policy-key: unknown key %.*s", (int) (kn > 64 ? 64 : kn), line);
        return -1;
    }
    if (pol->seen & (1UL << key)) {
        set_err(err, errlen, "policy-key: %s given twice", policy_keys[key]);
        return -1;
    }
    pol->seen |= 1UL << key;
    if (vend == vstart) {
        set_err(err, errlen, "policy-value: %s: empty value", policy_keys[key]);
        return -1;
    }
    return apply_key(pol, key, line + vstart, vend - vstart, err, errlen);
}

/* After every line: required keys, and keys that belong to another resolver. */
static int check_complete(const struct ms_policy *pol, char *err, size_t errlen)
{
    static const int required[] = {
        K_CALLER_GROUPS, K_TARGET_UIDS, K_TARGET_GIDS, K_INTERPRETER, K_ENTRY, K_RESOLVER,
    };
    size_t i;
    int want_file = pol->resolver == MS_RESOLVE_PASSWD_FILE;
    int want_lookup = pol->resolver == MS_RESOLVE_LOOKUP;

    for (i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (!(pol->seen & (1UL << required[i]))) {
            set_err(err, errlen, "policy-missing: %s is required", policy_keys[required[i]]);
            return -1;
        }
    if (want_file != !!(pol->seen & (1UL << K_PASSWD_FILE))) {
        set_err(err, errlen, "policy-missing: passwd_file goes with resolver = passwd-file");
        return -1;
    }
    if (want_lookup != !!(pol->seen & (1UL << K_LOOKUP_USER))
        || want_lookup != !!(pol->seen & (1UL << K_LOOKUP_ENTRY))) {
        set_err(err, errlen,
                "policy-missing: lookup_user and lookup_entry go with resolver = lookup");
        return -1;
    }
    return 0;
}

int ms_policy_parse(const char *buf, size_t len, struct ms_policy *pol, char *err,
                    size_t errlen)
{
    size_t pos = 0, lineno = 0;

    memset(pol, 0, sizeof(*pol));
    if (len > MS_POLICY_MAX_BYTES) {
        set_err(err, errlen, "policy-syntax: file larger than %d bytes", MS_POLICY_MAX_BYTES);
        return -1;
    }
    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t) (nl - line) : len - pos;
        size_t i, first;
        char sub[256];

        pos += n + (nl ? 1 : 0);
        lineno++;
        if (n > MS_POLICY_LINE_MAX) {
            set_err(err, errlen, "policy-syntax: line %zu longer than %d bytes", lineno,
                    MS_POLICY_LINE_MAX);
            return -1;
        }
        for (i = 0; i < n; i++) {
            unsigned char c = (unsigned char) line[i];
            if ((c < 0x20 && c != '\t') || c > 0x7e) {
                set_err(err, errlen, "policy-syntax: line %zu: control or non-ASCII byte",
                        lineno);
                return -1;
            }
        }
        for (first = 0; first < n && is_space((unsigned char) line[first]); first++)
            ;
        if (first == n || line[first] == '#')
            continue;
        if (parse_line(pol, line + first, n - first, sub, sizeof(sub)) < 0) {
            /* Keep the rule name first: "policy-value: line 3: target_uids: ..." */
            const char *colon = strchr(sub, ':');
            int rl = colon ? (int) (colon - sub) : (int) strlen(sub);
            set_err(err, errlen, "%.*s: line %zu%s", rl, sub, lineno, colon ? colon : "");
            return -1;
        }
    }
    if (!(pol->seen & (1UL << K_USERNAME_FORMAT)))
        memcpy(pol->username_format, MS_USERNAME_FORMAT_DEFAULT,
               sizeof(MS_USERNAME_FORMAT_DEFAULT));
    return check_complete(pol, err, errlen);
}

/* ---- argv ---------------------------------------------------------------------- */

static int has_control(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c < 0x20 || c == 0x7f)
            return 1;
    }
    return 0;
}

int ms_user_is_valid(const char *s)
{
    size_t i, n;

    if (s == NULL)
        return 0;
    n = strnlen(s, MS_USER_MAX + 1);
    /* A leading '-' could be read as an option, a leading '.' names a dot file. */
    if (n == 0 || n > MS_USER_MAX || s[0] == '-' || s[0] == '.')
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        /* ':' splits passwd-file fields, '/' and '\\' make paths of %u templates. */
        if (c < 0x21 || c > 0x7e || c == '/' || c == ':' || c == '\\')
            return 0;
    }
    return strstr(s, "..") == NULL;
}

/* ---- user names: username_format ------------------------------------------------ */

/* A literal byte of username_format: one that ms_user_is_valid admits anywhere in a
 * name ('%' only ever starts a variable). */
static int format_literal_is_valid(int c)
{
    return c >= 0x21 && c <= 0x7e && c != '/' && c != ':' && c != '\\' && c != '%';
}

/* Walk fmt; when user is not NULL, append its expansion to out (outlen bytes, *used
 * so far, always NUL-terminated). 0 done, -1 not a template we know (err set),
 * -2 the expansion does not fit. The values are Dovecot's auth variables:
 * %u user, %n t_strcut(user, '@'), %d what follows the first '@' or "". */
static int walk_format(const char *fmt, const char *user, char *out, size_t outlen,
                       size_t *used, char *err, size_t errlen)
{
    static const char name[] = "username_format";
    size_t i, n;
    int names_user = 0;

    n = fmt == NULL ? 0 : strnlen(fmt, MS_USERNAME_FORMAT_MAX + 1);
    if (n == 0 || n > MS_USERNAME_FORMAT_MAX) {
        set_err(err, errlen, "policy-value: %s: empty or longer than %d bytes", name,
                MS_USERNAME_FORMAT_MAX);
        return -1;
    }
    for (i = 0; i < n; i++) {
        const char *part = fmt + i, *at;
        size_t plen = 1, k;
        int lower = 0, c = (unsigned char) fmt[i];

        if (c != '%') {
            if (!format_literal_is_valid(c)) {
                set_err(err, errlen, "policy-value: %s: byte 0x%02x cannot be part of a "
                        "user name", name, (unsigned) c);
                return -1;
            }
        } else {
            size_t start = i;
            if (i + 1 < n && fmt[i + 1] == 'L') {
                lower = 1;
                i++;
            }
            if (i + 1 >= n || (fmt[i + 1] != 'u' && fmt[i + 1] != 'n' && fmt[i + 1] != 'd')) {
                /* Only the subset below: a Dovecot variable we do not implement is
                 * refused, never expanded to "" (that would name another user). */
                set_err(err, errlen, "policy-value: %s: unknown %%-sequence \"%.*s\" "
                        "(the relay knows %%u %%n %%d %%Lu %%Ln %%Ld)", name,
                        (int) (i + 2 <= n ? i + 2 - start : n - start), fmt + start);
                return -1;
            }
            i++;
            if (fmt[i] != 'd')
                names_user = 1;
            if (user != NULL) {
                at = strchr(user, '@');
                if (fmt[i] == 'u') {
                    part = user;
                    plen = strlen(user);
                } else if (fmt[i] == 'n') {
                    part = user;
                    plen = at != NULL ? (size_t) (at - user) : strlen(user);
                } else {
                    part = at != NULL ? at + 1 : "";
                    plen = strlen(part);
                }
            }
        }
        if (user == NULL)
            continue;
        if (*used + plen >= outlen)
            return -2;
        for (k = 0; k < plen; k++) {
            char b = part[k];
            /* Dovecot's %L is str_lcase: ASCII letters only. */
            out[(*used)++] = lower && b >= 'A' && b <= 'Z' ? (char) (b - 'A' + 'a') : b;
        }
        out[*used] = '\0';
    }
    if (!names_user) {
        /* A template without the name would send every recipient to one user. */
        set_err(err, errlen, "policy-value: %s: must use %%u or %%n (%%Lu, %%Ln)", name);
        return -1;
    }
    return 0;
}

int ms_username_format_check(const char *fmt, char *err, size_t errlen)
{
    return walk_format(fmt, NULL, NULL, 0, NULL, err, errlen);
}

int ms_username_format(const char *fmt, const char *user, char *out, size_t outlen,
                       char *err, size_t errlen)
{
    size_t used = 0;
    int rc;

    if (out == NULL || outlen == 0)
        return -1;
    out[0] = '\0';
    if (ms_username_format_check(fmt, err, errlen) < 0)
        return -1;
    if (!ms_user_is_valid(user)) {
        set_err(err, errlen, "not a valid user name");
        return 0;
    }
    rc = walk_format(fmt, user, out, outlen, &used, err, errlen);
    if (rc == -2 || used > MS_USER_MAX) {
        out[0] = '\0';
        set_err(err, errlen, "username_format %s makes a name longer than %d bytes", fmt,
                MS_USER_MAX);
        return 0;
    }
    if (rc < 0)
        return -1;
    if (used == 0) {
        set_err(err, errlen, "username_format %s makes an empty name", fmt);
        return 0;
    }
    /* %d of "u@.x" is ".x": the result must pass the same check as -d itself. */
    if (!ms_user_is_valid(out)) {
        set_err(err, errlen, "username_format %s makes \"%s\", not a valid user name", fmt,
                out);
        out[0] = '\0';
        return 0;
    }
    return 1;
}

/* ---- user names: recipient_delimiter --------------------------------------------- */

int ms_recipient_delimiter_check(const char *delims, char *err, size_t errlen)
{
    static const char name[] = "recipient_delimiter";
    size_t i, n;

    n = delims == NULL ? 0 : strnlen(delims, MS_DELIMITER_MAX + 1);
    if (n == 0 || n > MS_DELIMITER_MAX) {
        set_err(err, errlen, "policy-value: %s: empty or longer than %d bytes", name,
                MS_DELIMITER_MAX);
        return -1;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) delims[i];
        if (c < 0x21 || c > 0x7e || c == '@' || c == '%') {
            set_err(err, errlen, "policy-value: %s: byte 0x%02x cannot be a delimiter "
                    "(printable ASCII other than '@', '%%' and space)", name, (unsigned) c);
            return -1;
        }
    }
    return 0;
}

int ms_strip_detail(const char *delims, const char *user, char *out, size_t outlen)
{
    size_t n, local, cut, i;

    if (user == NULL || out == NULL || outlen == 0)
        return -1;
    n = strnlen(user, outlen);
    if (n >= outlen)
        return -1;
    /* The local part ends at the LAST '@' (the engine's str.rpartition): a domain
     * is never cut into, whatever delimiter characters it holds. */
    for (local = n; local > 0 && user[local - 1] != '@'; local--)
        ;
    local = local > 0 ? local - 1 : n;
    cut = local;
    for (i = 0; delims != NULL && delims[i] != '\0'; i++) {
        const char *p = memchr(user, delims[i], local);
        /* Only each character's FIRST occurrence counts, and not at offset 0: the
         * engine's str.find(d) > 0. "+x" keeps its '+' (ms_user_names refuses it). */
        if (p != NULL && p > user && (size_t) (p - user) < cut)
            cut = (size_t) (p - user);
    }
    memcpy(out, user, cut);
    memcpy(out + cut, user + local, n - local);
    out[cut + n - local] = '\0';
    return (int) (cut + n - local);
}

int ms_user_names(const struct ms_policy *pol, const char *user, char *lookup,
                  char *engine, size_t outlen, char *err, size_t errlen)
{
    char bare[MS_USER_MAX + 1], full[MS_USER_MAX + 1], back[MS_USER_MAX + 1];
    const char *delims = pol->recipient_delimiter;
    int rc;

    if (lookup == NULL || engine == NULL || outlen == 0)
        return -1;
    lookup[0] = engine[0] = '\0';
    if (!ms_user_is_valid(user)) {
        set_err(err, errlen, "not a valid user name");
        return 0;
    }
    /* Detail first, then username_format: Dovecot's and the engine's order. */
    if (ms_strip_detail(delims, user, bare, sizeof(bare)) < 0) {
        set_err(err, errlen, "not a valid user name");
        return 0;
    }
    /* "+x": a detail with no user before it. The engine keeps the '+' and its
     * auth_username_chars refuses it (Dovecot answers NOTFOUND): no user, never a
     * lookup of a name that begins with a delimiter. */
    if (bare[0] != '\0' && strchr(delims, bare[0]) != NULL) {
        set_err(err, errlen, "no user before the recipient_delimiter detail");
        return 0;
    }
    rc = ms_username_format(pol->username_format, bare, lookup, outlen, err, errlen);
    if (rc != 1) {
        engine[0] = '\0';
        return rc;
    }
    memcpy(engine, lookup, strlen(lookup) + 1);
    if (strcmp(bare, user) == 0)
        return 1;
    /* The engine gets the detail too (Sieve's :detail, the envelope without -a/-r),
     * but only if its own rule (strip, then format) leads back to the very name
     * resolved here (%Ln makes "Bob+x@dom" "bob+x", which comes back to "bob"). A
     * template that mangles the delimiter (a letter that %Lu lower-cases) falls back
     * to the resolved name: relay and engine must never name different users. */
    if (ms_username_format(pol->username_format, user, full, sizeof(full), NULL, 0) == 1
        && ms_strip_detail(delims, full, back, sizeof(back)) >= 0
        && !(back[0] != '\0' && strchr(delims, back[0]) != NULL)
        && ms_username_format(pol->username_format, back, bare, sizeof(bare), NULL, 0) == 1
        && strcmp(bare, lookup) == 0 && strlen(full) < outlen)
        memcpy(engine, full, strlen(full) + 1);
    return 1;
}

int ms_address_is_valid(const char *s)
{
    size_t n;

    if (s == NULL)
        return 0;
    n = strnlen(s, MS_ADDRESS_MAX + 1);
    if (n > MS_ADDRESS_MAX || has_control(s, n))
        return 0;
    return n == 0 || s[0] != '-';
}

static int mailbox_is_valid(const char *s)
{
    size_t n = strnlen(s, MS_MAILBOX_MAX + 1);

    if (n > MS_MAILBOX_MAX || has_control(s, n))
        return 0;
    return n == 0 || s[0] != '-';
}

static int setting_is_valid(const char *s)
{
    size_t n = strnlen(s, MS_SETTING_MAX + 1), i;
    const char *eq = memchr(s, '=', n);

    if (n > MS_SETTING_MAX || eq == NULL || eq == s || has_control(s, n))
        return 0;
    for (i = 0; s + i < eq; i++) {
        int c = (unsigned char) s[i];
        if (!is_alpha(c) && !is_digit(c) && c != '_' && c != '/' && c != '.' && c != '-')
            return 0;
    }
    return s[0] != '-';
}

/* Store an option's value once; a second -d (or -a, ...) is a usage error. */
static int store_once(const char **slot, const char *value, char opt, char *err,
                      size_t errlen)
{
    if (*slot != NULL) {
        set_err(err, errlen, "usage: -%c given twice", opt);
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
            set_err(err, errlen, "usage: -d: not a valid user name");
            return MS_ARGS_USAGE;
        }
        return store_once(&a->user, v, opt, err, errlen);
    case 'a':
    case 'r':
    case 'f':
        if (!ms_address_is_valid(v) || (opt != 'f' && v[0] == '\0')) {
            set_err(err, errlen, "usage: -%c: not a valid address", opt);
            return MS_ARGS_USAGE;
        }
        return store_once(opt == 'a' ? &a->orig_rcpt : opt == 'r' ? &a->final_rcpt
                                                                  : &a->sender,
                          v, opt, err, errlen);
    case 'm':
        if (!mailbox_is_valid(v)) {
            set_err(err, errlen, "usage: -m: not a valid mailbox name");
            return MS_ARGS_USAGE;
        }
        return store_once(&a->mailbox, v, opt, err, errlen);
    case 'c':
        /* A caller-chosen configuration could aim delivery anywhere. */
        if (!pol->caller_config) {
            set_err(err, errlen, "caller-config: -c is not allowed by the policy");
            return MS_ARGS_DENIED;
        }
        if (!ms_path_is_valid(v, 0)) {
            set_err(err, errlen, "usage: -c: not an absolute path");
            return MS_ARGS_USAGE;
        }
        return store_once(&a->config, v, opt, err, errlen);
    case 'o':
        if (!pol->caller_config) {
            set_err(err, errlen, "caller-config: -o is not allowed by the policy");
            return MS_ARGS_DENIED;
        }
        if (!setting_is_valid(v)) {
            set_err(err, errlen, "usage: -o: expected key=value");
            return MS_ARGS_USAGE;
        }
        if (a->n_settings >= MS_MAX_SETTINGS) {
            set_err(err, errlen, "usage: more than %d -o", MS_MAX_SETTINGS);
            return MS_ARGS_USAGE;
        }
        a->settings[a->n_settings++] = v;
        return MS_ARGS_OK;
    case 'p':
        if (!pol->caller_mail_path) {
            set_err(err, errlen, "caller-mail-path: -p is not allowed by the policy");
            return MS_ARGS_DENIED;
        }
        if (!ms_path_is_valid(v, 0)) {
            set_err(err, errlen, "usage: -p: not an absolute path");
            return MS_ARGS_USAGE;
        }
        return store_once(&a->mail_path, v, opt, err, errlen);
    }
    set_err(err, errlen, "usage: unknown option -%c", opt);
    return MS_ARGS_USAGE;
}

int ms_args_parse(int argc, char *const argv[], const struct ms_policy *pol,
                  struct ms_args *a, char *err, size_t errlen)
{
    int i;

    memset(a, 0, sizeof(*a));
    /* argc 0 (argv[0] NULL) is how CVE-2021-4034 began: refuse it outright. */
    if (argc < 1 || argv == NULL || argv[0] == NULL) {
        set_err(err, errlen, "usage: empty argument vector");
        return MS_ARGS_USAGE;
    }
    if (argc > MS_MAX_ARGS) {
        set_err(err, errlen, "usage: more than %d arguments", MS_MAX_ARGS);
        return MS_ARGS_USAGE;
    }
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        size_t j;

        if (arg == NULL)
            break;
        if (arg[0] != '-' || arg[1] == '\0' || strcmp(arg, "--") == 0) {
            set_err(err, errlen, "usage: unexpected argument (dovecot-lda takes options only)");
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
                    set_err(err, errlen, "usage: unknown option -%c", opt);
                else
                    set_err(err, errlen, "usage: unknown option");
                return MS_ARGS_USAGE;
            }
            if (arg[j + 1] != '\0') {
                rc = take_value(a, pol, opt, arg + j + 1, err, errlen);
            } else if (i + 1 < argc && argv[i + 1] != NULL) {
                rc = take_value(a, pol, opt, argv[++i], err, errlen);
            } else {
                set_err(err, errlen, "usage: -%c needs a value", opt);
                return MS_ARGS_USAGE;
            }
            if (rc != MS_ARGS_OK)
                return rc;
            break;
        }
    }
    if (a->user == NULL) {
        set_err(err, errlen, "usage: -d <user> is required (the relay delivers to a named user)");
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
        set_err(err, errlen, "environment: more than fits the relay's bounds");
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

    return n <= MS_ENV_VALUE_MAX && !has_control(v, n);
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
        if (!is_alpha(c) && !is_digit(c) && strchr("_+-:,./<>", c) == NULL)
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
        set_err(err, errlen, "environment: no room");
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
            set_err(err, errlen, "environment: group list too long");
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

/* ---- targets ------------------------------------------------------------------- */

static int home_is_valid(const char *s)
{
    return ms_path_is_valid(s, 1);
}

/* Field k (0-based) of a ':'-separated line; returns its length, or -1 if absent. */
static long field(const char *line, size_t n, int k, const char **start)
{
    size_t i, f = 0, s = 0;

    for (i = 0; i <= n; i++) {
        if (i == n || line[i] == ':') {
            if ((int) f == k) {
                *start = line + s;
                return (long) (i - s);
            }
            f++;
            s = i + 1;
        }
    }
    return -1;
}

int ms_passwd_file_find(const char *buf, size_t len, const char *user,
                        struct ms_target *t, char *err, size_t errlen)
{
    size_t pos = 0, lineno = 0, ulen;
    int found = 0;

    if (user == NULL || !ms_user_is_valid(user)) {
        set_err(err, errlen, "passwd-file: not a valid user name");
        return -1;
    }
    ulen = strlen(user);
    if ((long long) len > (long long) MS_PASSWD_MAX_BYTES) {
        set_err(err, errlen, "passwd-file: larger than %ld bytes", (long) MS_PASSWD_MAX_BYTES);
        return -1;
    }
    if (memchr(buf, '\0', len) != NULL) {
        set_err(err, errlen, "passwd-file: contains a NUL byte");
        return -1;
    }
    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t) (nl - line) : len - pos;
        const char *f;
        long fl;
        unsigned long uid, gid;

        pos += n + (nl ? 1 : 0);
        lineno++;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (n > MS_PASSWD_LINE_MAX) {
            set_err(err, errlen, "passwd-file: line %zu longer than %d bytes", lineno,
                    MS_PASSWD_LINE_MAX);
            return -1;
        }
        if (n == 0 || line[0] == '#')
            continue;
        fl = field(line, n, 0, &f);
        if (fl != (long) ulen || memcmp(f, user, ulen) != 0)
            continue;
        /* Two lines for one name: which one the engine believes is not knowable. */
        if (found) {
            set_err(err, errlen, "passwd-file: user listed twice (line %zu)", lineno);
            return -1;
        }
        found = 1;
        memset(t, 0, sizeof(*t));
        memcpy(t->user, user, ulen + 1);
        if ((fl = field(line, n, 2, &f)) < 0 || parse_id(f, (size_t) fl, &uid) < 0) {
            set_err(err, errlen, "passwd-file: line %zu: uid is not a number", lineno);
            return -1;
        }
        if ((fl = field(line, n, 3, &f)) < 0 || parse_id(f, (size_t) fl, &gid) < 0) {
            set_err(err, errlen, "passwd-file: line %zu: gid is not a number", lineno);
            return -1;
        }
        if ((fl = field(line, n, 5, &f)) < 0
            || copy_bounded(t->home, sizeof(t->home), f, (size_t) fl) < 0
            || !home_is_valid(t->home)) {
            set_err(err, errlen, "passwd-file: line %zu: home is not an absolute path",
                    lineno);
            return -1;
        }
        t->uid = uid;
        t->gid = gid;
        /* A passwd-file user has no supplementary groups: exactly its gid. */
        t->groups[0] = gid;
        t->n_groups = 1;
    }
    return found;
}

int ms_lookup_answer_parse(const char *buf, size_t len, struct ms_target *t, char *err,
                           size_t errlen)
{
    const char *p = buf, *end = buf + len, *tab;
    unsigned long uid, gid;
    size_t hl;

    if (len == 0 || len > MS_LOOKUP_ANSWER_MAX || buf[len - 1] != '\n'
        || memchr(buf, '\n', len - 1) != NULL || memchr(buf, '\0', len) != NULL) {
        set_err(err, errlen, "lookup-answer: not one bounded line");
        return -1;
    }
    end--;                                        /* drop the newline */
    /* "OK\tuid=N\tgid=N\thome=PATH": the engine's --lookup answer, fields in order. */
    if ((size_t) (end - p) < 7 || memcmp(p, "OK\tuid=", 7) != 0)
        goto bad;
    p += 7;
    tab = memchr(p, '\t', (size_t) (end - p));
    if (tab == NULL || parse_id(p, (size_t) (tab - p), &uid) < 0)
        goto bad;
    p = tab + 1;
    if ((size_t) (end - p) < 4 || memcmp(p, "gid=", 4) != 0)
        goto bad;
    p += 4;
    tab = memchr(p, '\t', (size_t) (end - p));
    if (tab == NULL || parse_id(p, (size_t) (tab - p), &gid) < 0)
        goto bad;
    p = tab + 1;
    if ((size_t) (end - p) < 5 || memcmp(p, "home=", 5) != 0)
        goto bad;
    p += 5;
    hl = (size_t) (end - p);
    if (memchr(p, '\t', hl) != NULL
        || copy_bounded(t->home, sizeof(t->home), p, hl) < 0 || !home_is_valid(t->home))
        goto bad;
    t->uid = uid;
    t->gid = gid;
    t->groups[0] = gid;
    t->n_groups = 1;
    return 0;
bad:
    set_err(err, errlen, "lookup-answer: expected \"OK<tab>uid=N<tab>gid=N<tab>home=/path\"");
    return -1;
}

int ms_target_check(const struct ms_policy *pol, const struct ms_target *t,
                    const unsigned long *caller_gids, size_t n_caller_gids, char *err,
                    size_t errlen)
{
    size_t i, j;

    if (t->uid == 0) {
        set_err(err, errlen, "target-root: %s maps to uid 0", t->user);
        return -1;
    }
    if (t->gid == 0) {
        set_err(err, errlen, "target-root: %s maps to gid 0", t->user);
        return -1;
    }
    if (!ms_range_contains(pol->target_uids, pol->n_target_uids, t->uid)) {
        set_err(err, errlen, "target-uid-range: uid %lu of %s is outside target_uids",
                t->uid, t->user);
        return -1;
    }
    if (!ms_range_contains(pol->target_gids, pol->n_target_gids, t->gid)) {
        set_err(err, errlen, "target-gid-range: gid %lu of %s is outside target_gids",
                t->gid, t->user);
        return -1;
    }
    if (t->n_groups > MS_MAX_TARGET_GROUPS) {
        set_err(err, errlen, "target-groups: too many groups");
        return -1;
    }
    for (i = 0; i < t->n_groups; i++) {
        if (t->groups[i] == 0 || t->groups[i] > MS_ID_MAX) {
            set_err(err, errlen, "target-root: %s is a member of group 0", t->user);
            return -1;
        }
        /* A target in a caller group could run the relay itself: any uid in range. */
        for (j = 0; j < n_caller_gids; j++)
            if (t->groups[i] == caller_gids[j]) {
                set_err(err, errlen, "target-caller-group: %s is a member of caller group %lu",
                        t->user, caller_gids[j]);
                return -1;
            }
    }
    if (!home_is_valid(t->home)) {
        set_err(err, errlen, "target-home: home of %s is not an absolute path", t->user);
        return -1;
    }
    return 0;
}
