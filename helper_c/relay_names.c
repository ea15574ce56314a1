/*
 * relay_names.c -- the -d user name: what a valid name is, the recipient_delimiter
 * detail stripper and the username_format template (the subset of Dovecot's
 * auth_username_format the relay knows: %u %n %d, L for lower case).
 *
 * What it does: ms_user_names turns the -d of the command line into the canonical
 * name the relay resolves and announces, and the -d the engine gets (the same name
 * with its detail, when the engine's own rule leads back to it).
 *
 * Errors: 0 from ms_user_names is "no such user" (the relay exits 67); -1 is a
 * template the relay does not know (a policy error, 75).
 *
 * Security notes: the relay and the engine must resolve ONE user for one -d; a name
 * is resolved only after both rules, applied in Dovecot's order (detail, then
 * format), and a result that is not itself a valid name is no user. A valid name is
 * printable ASCII without '/', ':', '\' or "..", not starting with '-' or '.', at
 * most MS_USER_MAX bytes: it can never become an option, a path or a passwd-file
 * field.
 */
#include "relay_common.h"
#include "relay_rules.h"

#include <string.h>

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
        ms_set_err(err, errlen, "policy-value: %s: empty or longer than %d bytes", name,
                MS_USERNAME_FORMAT_MAX);
        return -1;
    }
    for (i = 0; i < n; i++) {
        const char *part = fmt + i, *at;
        size_t plen = 1, k;
        int lower = 0, c = (unsigned char) fmt[i];

        if (c != '%') {
            if (!format_literal_is_valid(c)) {
                ms_set_err(err, errlen, "policy-value: %s: byte 0x%02x cannot be part of a "
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
                ms_set_err(err, errlen, "policy-value: %s: unknown %%-sequence \"%.*s\" "
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
        ms_set_err(err, errlen, "policy-value: %s: must use %%u or %%n (%%Lu, %%Ln)", name);
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
        ms_set_err(err, errlen, "not a valid user name");
        return 0;
    }
    rc = walk_format(fmt, user, out, outlen, &used, err, errlen);
    if (rc == -2 || used > MS_USER_MAX) {
        out[0] = '\0';
        ms_set_err(err, errlen, "username_format %s makes a name longer than %d bytes", fmt,
                MS_USER_MAX);
        return 0;
    }
    if (rc < 0)
        return -1;
    if (used == 0) {
        ms_set_err(err, errlen, "username_format %s makes an empty name", fmt);
        return 0;
    }
    /* %d of "u@.x" is ".x": the result must pass the same check as -d itself. */
    if (!ms_user_is_valid(out)) {
        ms_set_err(err, errlen, "username_format %s makes \"%s\", not a valid user name", fmt,
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
        ms_set_err(err, errlen, "policy-value: %s: empty or longer than %d bytes", name,
                MS_DELIMITER_MAX);
        return -1;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) delims[i];
        if (c < 0x21 || c > 0x7e || c == '@' || c == '%') {
            ms_set_err(err, errlen, "policy-value: %s: byte 0x%02x cannot be a delimiter "
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
        ms_set_err(err, errlen, "not a valid user name");
        return 0;
    }
    /* Detail first, then username_format: Dovecot's and the engine's order. */
    if (ms_strip_detail(delims, user, bare, sizeof(bare)) < 0) {
        ms_set_err(err, errlen, "not a valid user name");
        return 0;
    }
    /* "+x": a detail with no user before it. The engine keeps the '+' and its
     * auth_username_chars refuses it (Dovecot answers NOTFOUND): no user, never a
     * lookup of a name that begins with a delimiter. */
    if (bare[0] != '\0' && strchr(delims, bare[0]) != NULL) {
        ms_set_err(err, errlen, "no user before the recipient_delimiter detail");
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
