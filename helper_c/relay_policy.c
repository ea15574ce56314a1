/*
 * relay_policy.c -- the policy file parser (/etc/mailslot/relay.policy) and the
 * range check on ids.
 *
 * What it does: parses "key = value" lines into struct ms_policy: caller groups,
 * target uid/gid ranges, the engine's paths, the resolver, the lookup user, the
 * variables to pass, the yes/no switches, username_format and recipient_delimiter.
 *
 * Errors: one line "policy-syntax|policy-key|policy-value|policy-missing: line N: ...";
 * the relay answers every one with 75 (a configuration mistake defers mail, it never
 * bounces it).
 *
 * Security notes: the relay reads the file only through ms_open_trusted (root's,
 * through root's directories), and still trusts nothing in it: the parse is strict
 * (an unknown key, a duplicate, an empty or malformed value is an error, never a
 * default), bounded (MS_POLICY_MAX_BYTES, MS_POLICY_LINE_MAX, ASCII only), and some
 * promises hold whatever root writes: a range never contains 0, a forbidden
 * environment variable can never be passed, a username_format must name the user.
 */
#include "relay_common.h"
#include "relay_rules.h"

#include <string.h>

/* Policy keys, each with its bit in ms_policy.seen. */
enum {
    K_CALLER_GROUPS, K_TARGET_UIDS, K_TARGET_GIDS, K_INTERPRETER, K_ENTRY, K_RESOLVER,
    K_PASSWD_FILE, K_LOOKUP_USER, K_LOOKUP_ENTRY, K_PASS_ENV, K_NO_NEW_PRIVS,
    K_CALLER_CONFIG, K_CALLER_MAIL_PATH, K_USERNAME_FORMAT, K_RECIPIENT_DELIMITER,
    K_ENGINE_TREE, K_TARGET_EXTRA_GROUPS, K_COUNT
};
static const char *const policy_keys[K_COUNT] = {
    "caller_groups", "target_uids", "target_gids", "interpreter", "entry", "resolver",
    "passwd_file", "lookup_user", "lookup_entry", "pass_env", "no_new_privs",
    "caller_config", "caller_mail_path", "username_format", "recipient_delimiter",
    "engine_tree", "target_extra_groups",
};

/* username_format when the policy does not name one: the -d name byte for byte, as
 * every relay before the key existed compared it (see relay.policy.example for why
 * this is the default rather than Dovecot's "%Lu"). */
#define MS_USERNAME_FORMAT_DEFAULT "%u"

/* A group or user name in the policy: [A-Za-z0-9_.-], not starting with '-'. */
static int name_is_valid(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > MS_NAME_MAX || s[0] == '-')
        return 0;
    for (i = 0; i < n; i++) {
        int c = (unsigned char) s[i];
        if (!ms_is_alpha(c) && !ms_is_digit(c) && c != '_' && c != '.' && c != '-')
            return 0;
    }
    return 1;
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
            while (a < b && ms_is_space((unsigned char) v[a]))
                a++;
            while (b > a && ms_is_space((unsigned char) v[b - 1]))
                b--;
            if (a == b) {
                ms_set_err(err, errlen, "policy-value: %s: empty list item", key);
                return -1;
            }
            if (item(pol, v + a, b - a, err, errlen, key) < 0)
                return -1;
            start = i + 1;
        }
    }
    return 0;
}

static int add_name(char (*names)[MS_NAME_MAX + 1], size_t *count, size_t max,
                    const char *s, size_t n, char *err, size_t errlen, const char *key)
{
    size_t i;

    if (!name_is_valid(s, n)) {
        ms_set_err(err, errlen, "policy-value: %s: not a group name", key);
        return -1;
    }
    for (i = 0; i < *count; i++)
        if (strlen(names[i]) == n && memcmp(names[i], s, n) == 0) {
            ms_set_err(err, errlen, "policy-value: %s: %.*s listed twice", key, (int) n, s);
            return -1;
        }
    if (*count >= max) {
        ms_set_err(err, errlen, "policy-value: %s: more than %zu groups", key, max);
        return -1;
    }
    (void) ms_copy_bounded(names[(*count)++], MS_NAME_MAX + 1, s, n);
    return 0;
}

static int add_group(struct ms_policy *pol, const char *s, size_t n, char *err,
                     size_t errlen, const char *key)
{
    return add_name(pol->caller_groups, &pol->n_caller_groups, MS_MAX_CALLER_GROUPS, s, n,
                    err, errlen, key);
}

/* Groups a target may keep in the engine besides its primary gid. Which gids they
 * are, and that none is 0, the mail group or a caller group, the relay checks when
 * it resolves them (NSS is not a pure function). */
static int add_extra_group(struct ms_policy *pol, const char *s, size_t n, char *err,
                           size_t errlen, const char *key)
{
    return add_name(pol->extra_groups, &pol->n_extra_groups, MS_MAX_EXTRA_GROUPS, s, n,
                    err, errlen, key);
}

static int add_range(struct ms_range *ranges, size_t *count, const char *s, size_t n,
                     char *err, size_t errlen, const char *key)
{
    const char *dash = memchr(s, '-', n);
    unsigned long lo, hi;

    if (dash == NULL) {
        if (ms_parse_id(s, n, &lo) < 0)
            goto bad;
        hi = lo;
    } else if (ms_parse_id(s, (size_t) (dash - s), &lo) < 0
               || ms_parse_id(dash + 1, n - (size_t) (dash - s) - 1, &hi) < 0) {
        goto bad;
    }
    if (lo == 0) {
        /* uid 0 and gid 0 are never targets: a range may not even name them. */
        ms_set_err(err, errlen, "policy-value: %s: a range may not include 0", key);
        return -1;
    }
    if (lo > hi)
        goto bad;
    if (*count >= MS_MAX_RANGES) {
        ms_set_err(err, errlen, "policy-value: %s: more than %d ranges", key, MS_MAX_RANGES);
        return -1;
    }
    ranges[*count].lo = lo;
    ranges[*count].hi = hi;
    (*count)++;
    return 0;
bad:
    ms_set_err(err, errlen, "policy-value: %s: ranges are N or N-M, 1 <= N <= M <= %lu",
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

    if (ms_copy_bounded(name, sizeof(name), s, n) < 0 || !ms_env_name_is_valid(s, n)) {
        ms_set_err(err, errlen, "policy-value: %s: not a variable name", key);
        return -1;
    }
    /* The forbidden names stay forbidden even if the administrator lists them. */
    if (ms_env_name_forbidden(name)) {
        ms_set_err(err, errlen, "policy-value: %s: %s may never be passed", key, name);
        return -1;
    }
    for (i = 0; i < pol->n_pass_env; i++)
        if (strcmp(pol->pass_env[i], name) == 0) {
            ms_set_err(err, errlen, "policy-value: %s: %s listed twice", key, name);
            return -1;
        }
    if (pol->n_pass_env >= MS_MAX_PASS_ENV) {
        ms_set_err(err, errlen, "policy-value: %s: more than %d names", key, MS_MAX_PASS_ENV);
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
    if (ms_copy_bounded(dst, MS_PATH_MAX, v, n) < 0 || !ms_path_is_valid(dst, 0)) {
        dst[0] = '\0';
        ms_set_err(err, errlen, "policy-value: %s: not an absolute path", key);
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
    case K_ENGINE_TREE:
        return set_path(pol->engine_tree, v, n, err, errlen, name);
    case K_TARGET_EXTRA_GROUPS:
        return for_each_item(pol, v, n, add_extra_group, err, errlen, name);
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
            ms_set_err(err, errlen, "policy-value: %s: nss, passwd-file or lookup", name);
            return -1;
        }
        return 0;
    case K_LOOKUP_USER:
        if (!name_is_valid(v, n)) {
            ms_set_err(err, errlen, "policy-value: %s: not a user name", name);
            return -1;
        }
        (void) ms_copy_bounded(pol->lookup_user, sizeof(pol->lookup_user), v, n);
        return 0;
    case K_PASS_ENV:
        return for_each_item(pol, v, n, add_pass_env, err, errlen, name);
    case K_USERNAME_FORMAT:
        if (ms_copy_bounded(pol->username_format, sizeof(pol->username_format), v, n) < 0) {
            ms_set_err(err, errlen, "policy-value: %s: longer than %d bytes", name,
                    MS_USERNAME_FORMAT_MAX);
            return -1;
        }
        /* Refused now, not at delivery: a template the relay cannot expand is a
         * configuration error (exit 75), never a reason to bounce mail. */
        return ms_username_format_check(pol->username_format, err, errlen);
    case K_RECIPIENT_DELIMITER:
        if (ms_copy_bounded(pol->recipient_delimiter, sizeof(pol->recipient_delimiter), v, n)
            < 0) {
            ms_set_err(err, errlen, "policy-value: %s: longer than %d bytes", name,
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
            ms_set_err(err, errlen, "policy-value: %s: yes or no", name);
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
        ms_set_err(err, errlen, "policy-syntax: expected key = value");
        return -1;
    }
    kn = (size_t) (eq - line);
    while (kn > 0 && ms_is_space((unsigned char) line[kn - 1]))
        kn--;
    vstart = (size_t) (eq - line) + 1;
    while (vstart < n && ms_is_space((unsigned char) line[vstart]))
        vstart++;
    vend = n;
    while (vend > vstart && ms_is_space((unsigned char) line[vend - 1]))
        vend--;
    for (key = 0; key < K_COUNT; key++)
        if (strlen(policy_keys[key]) == kn && memcmp(policy_keys[key], line, kn) == 0)
            break;
    if (key == K_COUNT) {
        ms_set_err(err, errlen, "policy-key: unknown key %.*s", (int) (kn > 64 ? 64 : kn), line);
        return -1;
    }
    if (pol->seen & (1UL << key)) {
        ms_set_err(err, errlen, "policy-key: %s given twice", policy_keys[key]);
        return -1;
    }
    pol->seen |= 1UL << key;
    if (vend == vstart) {
        ms_set_err(err, errlen, "policy-value: %s: empty value", policy_keys[key]);
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
            ms_set_err(err, errlen, "policy-missing: %s is required", policy_keys[required[i]]);
            return -1;
        }
    if (want_file != !!(pol->seen & (1UL << K_PASSWD_FILE))) {
        ms_set_err(err, errlen, "policy-missing: passwd_file goes with resolver = passwd-file");
        return -1;
    }
    if (want_lookup != !!(pol->seen & (1UL << K_LOOKUP_USER))
        || want_lookup != !!(pol->seen & (1UL << K_LOOKUP_ENTRY))) {
        ms_set_err(err, errlen,
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
        ms_set_err(err, errlen, "policy-syntax: file larger than %d bytes", MS_POLICY_MAX_BYTES);
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
            ms_set_err(err, errlen, "policy-syntax: line %zu longer than %d bytes", lineno,
                    MS_POLICY_LINE_MAX);
            return -1;
        }
        for (i = 0; i < n; i++) {
            unsigned char c = (unsigned char) line[i];
            if ((c < 0x20 && c != '\t') || c > 0x7e) {
                ms_set_err(err, errlen, "policy-syntax: line %zu: control or non-ASCII byte",
                        lineno);
                return -1;
            }
        }
        for (first = 0; first < n && ms_is_space((unsigned char) line[first]); first++)
            ;
        if (first == n || line[first] == '#')
            continue;
        if (parse_line(pol, line + first, n - first, sub, sizeof(sub)) < 0) {
            /* Keep the rule name first: "policy-value: line 3: target_uids: ..." */
            const char *colon = strchr(sub, ':');
            int rl = colon ? (int) (colon - sub) : (int) strlen(sub);
            ms_set_err(err, errlen, "%.*s: line %zu%s", rl, sub, lineno, colon ? colon : "");
            return -1;
        }
    }
    if (!(pol->seen & (1UL << K_USERNAME_FORMAT)))
        memcpy(pol->username_format, MS_USERNAME_FORMAT_DEFAULT,
               sizeof(MS_USERNAME_FORMAT_DEFAULT));
    return check_complete(pol, err, errlen);
}
