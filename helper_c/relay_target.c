/*
 * relay_target.c -- the target of a delivery: a Dovecot passwd-file line, the lookup
 * child's answer, and the check of the resolved target against the policy.
 *
 * What it does: ms_passwd_file_find finds one user in a passwd-file held in memory;
 * ms_lookup_answer_parse reads the lookup child's one line; ms_target_check decides
 * whether the relay may become that target.
 *
 * Errors: "passwd-file: ..." and "lookup-answer: ..." (the relay: 75, a broken userdb
 * is not the caller's fault); ms_target_check returns -1 with the rule in err
 * ("target-root", "target-uid-range", ...), which the relay also answers with 75: a
 * target the policy does not allow is the administrator's mistake (a range, a
 * group, a userdb entry), and mail waits for the fix instead of bouncing.
 *
 * Security notes: neither source is believed: ids are decimal and at most MS_ID_MAX
 * ((uid_t)-1 means "unchanged" to set*id), a home is an absolute path without "."
 * or "..", a name listed twice is an error, and every answer still goes through
 * ms_target_check: uid 0 and gid 0 never, uid and gid in the policy's ranges, no
 * caller group and no mail group among the groups.
 */
#include "relay_common.h"
#include "relay_rules.h"

#include <string.h>

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
        ms_set_err(err, errlen, "passwd-file: not a valid user name");
        return -1;
    }
    ulen = strlen(user);
    if ((long long) len > (long long) MS_PASSWD_MAX_BYTES) {
        ms_set_err(err, errlen, "passwd-file: larger than %ld bytes", (long) MS_PASSWD_MAX_BYTES);
        return -1;
    }
    if (memchr(buf, '\0', len) != NULL) {
        ms_set_err(err, errlen, "passwd-file: contains a NUL byte");
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
            ms_set_err(err, errlen, "passwd-file: line %zu longer than %d bytes", lineno,
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
            ms_set_err(err, errlen, "passwd-file: user listed twice (line %zu)", lineno);
            return -1;
        }
        found = 1;
        memset(t, 0, sizeof(*t));
        memcpy(t->user, user, ulen + 1);
        if ((fl = field(line, n, 2, &f)) < 0 || ms_parse_id(f, (size_t) fl, &uid) < 0) {
            ms_set_err(err, errlen, "passwd-file: line %zu: uid is not a number", lineno);
            return -1;
        }
        if ((fl = field(line, n, 3, &f)) < 0 || ms_parse_id(f, (size_t) fl, &gid) < 0) {
            ms_set_err(err, errlen, "passwd-file: line %zu: gid is not a number", lineno);
            return -1;
        }
        if ((fl = field(line, n, 5, &f)) < 0
            || ms_copy_bounded(t->home, sizeof(t->home), f, (size_t) fl) < 0
            || !home_is_valid(t->home)) {
            ms_set_err(err, errlen, "passwd-file: line %zu: home is not an absolute path",
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
        ms_set_err(err, errlen, "lookup-answer: not one bounded line");
        return -1;
    }
    end--;                                        /* drop the newline */
    /* "OK\tuid=N\tgid=N\thome=PATH": the engine's --lookup answer, fields in order. */
    if ((size_t) (end - p) < 7 || memcmp(p, "OK\tuid=", 7) != 0)
        goto bad;
    p += 7;
    tab = memchr(p, '\t', (size_t) (end - p));
    if (tab == NULL || ms_parse_id(p, (size_t) (tab - p), &uid) < 0)
        goto bad;
    p = tab + 1;
    if ((size_t) (end - p) < 4 || memcmp(p, "gid=", 4) != 0)
        goto bad;
    p += 4;
    tab = memchr(p, '\t', (size_t) (end - p));
    if (tab == NULL || ms_parse_id(p, (size_t) (tab - p), &gid) < 0)
        goto bad;
    p = tab + 1;
    if ((size_t) (end - p) < 5 || memcmp(p, "home=", 5) != 0)
        goto bad;
    p += 5;
    hl = (size_t) (end - p);
    if (memchr(p, '\t', hl) != NULL
        || ms_copy_bounded(t->home, sizeof(t->home), p, hl) < 0 || !home_is_valid(t->home))
        goto bad;
    t->uid = uid;
    t->gid = gid;
    t->groups[0] = gid;
    t->n_groups = 1;
    return 0;
bad:
    ms_set_err(err, errlen, "lookup-answer: expected \"OK<tab>uid=N<tab>gid=N<tab>home=/path\"");
    return -1;
}

void ms_target_groups(struct ms_target *t, const unsigned long *extra, size_t n_extra)
{
    unsigned long out[MS_MAX_TARGET_GROUPS];
    size_t i, j, kept = 0;

    /* The primary gid first and always: the engine creates files with it. */
    out[kept++] = t->gid;
    for (i = 0; i < t->n_groups && i < MS_MAX_TARGET_GROUPS; i++) {
        unsigned long g = t->groups[i];
        int allowed = 0, dup = 0;
        for (j = 0; j < n_extra; j++)
            allowed |= g == extra[j];
        for (j = 0; j < kept; j++)
            dup |= g == out[j];
        if (allowed && !dup)
            out[kept++] = g;
    }
    memcpy(t->groups, out, kept * sizeof(out[0]));
    t->n_groups = kept;
}

int ms_target_check(const struct ms_policy *pol, const struct ms_target *t,
                    const unsigned long *caller_gids, size_t n_caller_gids,
                    unsigned long mail_gid, char *err, size_t errlen)
{
    size_t i, j;

    if (t->uid == 0) {
        ms_set_err(err, errlen, "target-root: %s maps to uid 0", t->user);
        return -1;
    }
    if (t->gid == 0) {
        ms_set_err(err, errlen, "target-root: %s maps to gid 0", t->user);
        return -1;
    }
    if (!ms_range_contains(pol->target_uids, pol->n_target_uids, t->uid)) {
        ms_set_err(err, errlen, "target-uid-range: uid %lu of %s is outside target_uids",
                t->uid, t->user);
        return -1;
    }
    if (!ms_range_contains(pol->target_gids, pol->n_target_gids, t->gid)) {
        ms_set_err(err, errlen, "target-gid-range: gid %lu of %s is outside target_gids",
                t->gid, t->user);
        return -1;
    }
    if (t->n_groups > MS_MAX_TARGET_GROUPS) {
        ms_set_err(err, errlen, "target-groups: too many groups");
        return -1;
    }
    for (i = 0; i < t->n_groups; i++) {
        if (t->groups[i] == 0 || t->groups[i] > MS_ID_MAX) {
            ms_set_err(err, errlen, "target-root: %s is a member of group 0", t->user);
            return -1;
        }
        /* The mail group lets its holder lock and create any spool file: the
         * engine is Python and never holds it (SECURITY.md). */
        if (mail_gid != 0 && t->groups[i] == mail_gid) {
            ms_set_err(err, errlen, "target-mail-group: %s would hold the mail group %lu",
                       t->user, mail_gid);
            return -1;
        }
        /* A target in a caller group could run the relay itself: any uid in range. */
        for (j = 0; j < n_caller_gids; j++)
            if (t->groups[i] == caller_gids[j]) {
                ms_set_err(err, errlen, "target-caller-group: %s is a member of caller group %lu",
                        t->user, caller_gids[j]);
                return -1;
            }
    }
    if (!home_is_valid(t->home)) {
        ms_set_err(err, errlen, "target-home: home of %s is not an absolute path", t->user);
        return -1;
    }
    return 0;
}
