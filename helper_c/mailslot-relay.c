/*
 * mailslot-relay -- run the mailslot delivery engine as the recipient's uid.
 *
 * Installed root:secmail 4750. An MTA running as a member of the caller group (the
 * Postfix pipe user "mailslot", group secmail) runs it exactly as it would run
 * dovecot-lda -d user; the relay checks who called, resolves the user, drops to the
 * user's uid, gid and groups for good, and execs the Python engine under -I -S. Root
 * is held until the drop (SECURITY.md states how many lines of C that is); no Python
 * ever runs as root.
 *
 * Order of steps (docs/architecture.md, "The privilege model"; SECURITY.md, "The
 * relay, step by step"), and nothing else:
 *   1. umask 077, fds 1-2 writable and fd 0 readable (else 75), other fds closed,
 *      signals reset, no core dumps; the caller's rlimits at least the relay's floor
 *   2. read the policy file (path fixed at build time, root-owned, not writable by
 *      group or others, reached through root-owned directories only)
 *   3. validate the caller from the kernel's ids: real gid or supplementary groups
 *   4. parse argv strictly as dovecot-lda's; the target is -d user, which loses its
 *      recipient_delimiter detail ("bob+lists" is "bob") and is then made canonical
 *      by the policy's username_format (e.g. %Lu: "Bob" is "bob"), Dovecot's order;
 *      that name is the one resolved and announced (USER, MAILSLOT_RELAY_USER). The
 *      engine gets -d formatted WITH its detail ("bob+lists") when its own rule
 *      (strip, then auth_username_format) leads back to the same name, so Sieve's
 *      :detail still works without -a/-r; otherwise it gets the resolved name
 *   5. check the interpreter and entries as their paths are written, and the engine's
 *      package tree; resolve the target (NSS, a root-owned Dovecot passwd-file, or an
 *      unprivileged lookup child); its groups become its primary gid plus only those
 *      the policy's target_extra_groups names; check uid, gid and groups
 *   6. build the environment from an allow-list
 *   7. drop: setgroups -> setresgid -> setresuid, verify, prove setuid(0) fails
 *   8. chdir(home), exec interpreter -I -S entry <validated argv>
 *
 * What it trusts: the kernel's view of the caller's ids; root-owned files reached
 * through root-owned directories (the policy file, the passwd-file, the interpreter,
 * the entry point and the engine's package tree: trusted.c); NSS as configured by root. Not trusted: argv, the environment,
 * inherited fds, signal state, resource limits, anything the lookup child says (its
 * answer is parsed and range-checked like any other).
 *
 * Exit codes (sysexits.h, the ones dovecot-lda uses):
 *   64 EX_USAGE    argv is not a dovecot-lda command line the relay accepts
 *   67 EX_NOUSER   the target user does not exist (or username_format makes no
 *                  valid user name of -d, e.g. %d of a name without a domain, or
 *                  -d is only a detail, "+lists")
 *   75 EX_TEMPFAIL anything that is not the caller's fault: a bad or unsafe policy,
 *                  engine or userdb, a target the policy does not allow (uid/gid 0,
 *                  out of range, the mail or a caller group: the administrator's
 *                  mistake, so the mail waits instead of bouncing), a failed or
 *                  surprising privilege drop, the caller's limits, no stdin. The MTA
 *                  keeps the message and retries.
 *   77 EX_NOPERM   what the caller did wrong: outside the caller groups, -c/-o/-p
 *                  not allowed by the policy
 * Every rule with its code: mailslot-relay(8) REFUSALS, tests/relay/test_refusal_table.py.
 * After a successful exec the engine's exit code is the MTA's answer.
 *
 * Diagnostics: every refusal is one line "mailslot-relay: <rule>: <detail>" on stderr
 * (the MTA's log and bounce) and in syslog (LOG_MAIL). SECURITY.md lists the rules.
 */
#define _GNU_SOURCE
#include "hygiene.h"
#include "relay_rules.h"
#include "trusted.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

/* The dotlock helper's group (Makefile MAIL_GROUP): never held by the engine. */
#ifndef MAILSLOT_MAIL_GROUP
#define MAILSLOT_MAIL_GROUP "mail"
#endif

#ifndef MAILSLOT_POLICY_PATH
#define MAILSLOT_POLICY_PATH "/etc/mailslot/relay.policy"
#endif

/* How long the lookup child may take to answer (Dovecot's auth client: 30 s). */
#define LOOKUP_TIMEOUT_MS 30000

/* capget(2)/capset(2) ABI, version 3 (linux/capability.h): two 32-bit words per set. */
#define CAP_VERSION_3 0x20080522
struct cap_header {
    uint32_t version;
    int pid;
};
struct cap_data {
    uint32_t effective, permitted, inheritable;
};

/* The ids the kernel says called us, read before anything else can change them. */
struct caller {
    uid_t uid;
    gid_t gid;
    gid_t *groups;             /* on the heap, sized to the caller's count */
    int n_groups;
};

/* malloc that answers 75 instead of failing later: a caller's RLIMIT_AS or
 * RLIMIT_DATA must give a reason, never a crash. */
static void *checked_alloc(size_t n, const char *what)
{
    void *p = malloc(n > 0 ? n : 1);

    if (p == NULL)
        ms_refuse(EX_TEMPFAIL, "memory: cannot allocate %zu bytes for %s (the caller's "
                  "RLIMIT_AS or RLIMIT_DATA?)", n, what);
    return p;
}

static void read_caller(struct caller *c)
{
    int n;

    c->uid = getuid();
    c->gid = getgid();
    /* Sized to what the caller has (up to NGROUPS_MAX, 65536): a fixed 256 KiB array
     * on the stack crashed the relay under a small RLIMIT_STACK. */
    n = getgroups(0, NULL);
    if (n < 0)
        ms_refuse(EX_TEMPFAIL, "caller-ids: cannot read the caller's groups");
    c->groups = checked_alloc((size_t) n * sizeof(gid_t), "the caller's groups");
    c->n_groups = getgroups(n, c->groups);
    if (c->n_groups < 0)
        ms_refuse(EX_TEMPFAIL, "caller-ids: cannot read the caller's groups");
}

/* The relay's own floor: below these a caller's limits would crash it (a stack
 * overflow is a SIGSEGV no code can answer), so it refuses first, with a reason.
 * Measured (Debian 12, NSS files, execing /usr/bin/true): the relay runs with 32 KiB
 * of stack (at 24 KiB it dies in the loader, before main, where nothing of ours
 * runs) and 3 MiB of address space; the floors leave 4x and 10x room for NSS
 * modules and syslog. tests/relay/test_limits.py runs it just above and below. */
#ifndef RELAY_STACK_FLOOR
#define RELAY_STACK_FLOOR (128 * 1024)
#endif
#ifndef RELAY_MEMORY_FLOOR
#define RELAY_MEMORY_FLOOR (32L * 1024 * 1024)
#endif

static void check_limits(void)
{
    static const struct { int resource; const char *name; rlim_t floor; } limits[] = {
        {RLIMIT_STACK, "RLIMIT_STACK", RELAY_STACK_FLOOR},
        {RLIMIT_AS, "RLIMIT_AS", RELAY_MEMORY_FLOOR},
        {RLIMIT_DATA, "RLIMIT_DATA", RELAY_MEMORY_FLOOR},
    };
    struct rlimit rl;
    size_t i;

    for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        if (getrlimit(limits[i].resource, &rl) != 0)
            ms_refuse(EX_TEMPFAIL, "rlimit: cannot read %s", limits[i].name);
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < limits[i].floor)
            ms_refuse(EX_TEMPFAIL, "rlimit: the caller's %s (%lu bytes) is below the "
                      "relay's %lu", limits[i].name, (unsigned long) rl.rlim_cur,
                      (unsigned long) limits[i].floor);
    }
}

/* Step 2: the policy, through ms_open_trusted: a policy swapped or made writable
 * under us is refused, and we parse the bytes of the file we checked. */
static void load_policy(struct ms_policy *pol)
{
    char err[512], *buf;
    const char *why = "";
    struct stat st;
    long len;
    int fd;

    fd = ms_open_trusted(MAILSLOT_POLICY_PATH, 0, &st, &why);
    if (fd < 0)
        ms_refuse(EX_TEMPFAIL, "policy-unsafe: %s %s", MAILSLOT_POLICY_PATH, why);
    if (st.st_size > MS_POLICY_MAX_BYTES)
        ms_refuse(EX_TEMPFAIL, "policy-unsafe: %s is larger than %d bytes",
                  MAILSLOT_POLICY_PATH, MS_POLICY_MAX_BYTES);
    buf = checked_alloc((size_t) st.st_size, "the policy");
    len = ms_read_all(fd, buf, (size_t) st.st_size);
    (void) close(fd);
    if (len < 0)
        ms_refuse(EX_TEMPFAIL, "policy-unsafe: %s cannot be read or changed while read",
                  MAILSLOT_POLICY_PATH);
    if (ms_policy_parse(buf, (size_t) len, pol, err, sizeof(err)) != 0)
        ms_refuse(EX_TEMPFAIL, "%s (in %s)", err, MAILSLOT_POLICY_PATH);
    free(buf);
}

/* Resolve n group names of the policy to gids (NSS, as root, clean environ). Group 0
 * is refused: as a caller group it would make every root-group process a caller, as
 * an extra target group it would hand the engine root's group. */
static void group_ids(const char *what, char (*names)[MS_NAME_MAX + 1], size_t n,
                      unsigned long *gids)
{
    size_t i;

    for (i = 0; i < n; i++) {
        struct group *gr;
        errno = 0;
        gr = getgrnam(names[i]);
        if (gr == NULL)
            ms_refuse(EX_TEMPFAIL, "policy-group: %s %s does not exist", what, names[i]);
        if (gr->gr_gid == 0)
            ms_refuse(EX_TEMPFAIL, "policy-group: %s %s is gid 0", what, names[i]);
        gids[i] = (unsigned long) gr->gr_gid;
    }
    endgrent();
}

/* The mail group (the dotlock helper's, fixed at build time) as a gid, 0 if the
 * system has no such group: no Python code may ever run with it. */
static unsigned long mail_group_id(void)
{
    struct group *gr = getgrnam(MAILSLOT_MAIL_GROUP);
    unsigned long gid = gr != NULL ? (unsigned long) gr->gr_gid : 0;

    endgrent();
    return gid;
}

/* target_extra_groups may name neither the mail group nor a caller group: the
 * engine would hold what the relay exists to keep from it. */
static void check_extra_groups(const struct ms_policy *pol, const unsigned long *extra,
                               const unsigned long *caller_gids, unsigned long mail_gid)
{
    size_t i, j;

    for (i = 0; i < pol->n_extra_groups; i++) {
        if (mail_gid != 0 && extra[i] == mail_gid)
            ms_refuse(EX_TEMPFAIL, "policy-group: target_extra_groups names the mail "
                      "group %s", pol->extra_groups[i]);
        for (j = 0; j < pol->n_caller_groups; j++)
            if (extra[i] == caller_gids[j])
                ms_refuse(EX_TEMPFAIL, "policy-group: target_extra_groups names the "
                          "caller group %s", pol->extra_groups[i]);
    }
}

/* Step 3: the caller must hold a caller group as real gid or supplementary group.
 * Both come from the kernel; nothing the caller says is consulted. */
static void check_caller(const struct caller *c, const unsigned long *gids, size_t n)
{
    size_t i;
    int j;

    for (i = 0; i < n; i++) {
        if ((unsigned long) c->gid == gids[i])
            return;
        for (j = 0; j < c->n_groups; j++)
            if ((unsigned long) c->groups[j] == gids[i])
                return;
    }
    ms_refuse(EX_NOPERM, "caller-not-allowed: uid %lu is not in a caller group of the policy",
              (unsigned long) c->uid);
}

/* Step 5a, NSS: getpwnam as root; groups are the user's initgroups list. */
static void resolve_nss(const char *user, struct ms_target *t)
{
    gid_t groups[MS_MAX_TARGET_GROUPS];
    int n = MS_MAX_TARGET_GROUPS, i;
    struct passwd *pw;

    errno = 0;
    pw = getpwnam(user);
    if (pw == NULL) {
        if (errno == 0 || errno == ENOENT || errno == ESRCH || errno == EBADF
            || errno == EPERM)
            ms_refuse(EX_NOUSER, "unknown-user: %s", user);
        ms_refuse(EX_TEMPFAIL, "userdb: NSS lookup of %s failed: %s", user, strerror(errno));
    }
    memset(t, 0, sizeof(*t));
    (void) snprintf(t->user, sizeof(t->user), "%s", user);
    t->uid = (unsigned long) pw->pw_uid;
    t->gid = (unsigned long) pw->pw_gid;
    if (pw->pw_dir == NULL || strlen(pw->pw_dir) >= sizeof(t->home))
        ms_refuse(EX_TEMPFAIL, "target-home: home of %s is too long", user);
    (void) snprintf(t->home, sizeof(t->home), "%s", pw->pw_dir);
    if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0)
        ms_refuse(EX_TEMPFAIL, "target-groups: %s is in more than %d groups", user,
                  MS_MAX_TARGET_GROUPS);
    for (i = 0; i < n; i++)
        t->groups[i] = (unsigned long) groups[i];
    t->n_groups = (size_t) n;
    endpwent();
    endgrent();
}

/* Step 5b, a Dovecot passwd-file: trusted like the policy, parsed strictly. */
static void resolve_passwd_file(const struct ms_policy *pol, const char *user,
                                struct ms_target *t)
{
    char err[512], *buf;
    const char *why = "";
    struct stat st;
    long len;
    int fd, rc;

    fd = ms_open_trusted(pol->passwd_file, 0, &st, &why);
    if (fd < 0)
        ms_refuse(EX_TEMPFAIL, "passwd-file-unsafe: %s %s", pol->passwd_file, why);
    /* Sized to the file (a static 64 MiB buffer crashed the relay under a small
     * RLIMIT_AS): bounded by MS_PASSWD_MAX_BYTES, allocated checked. */
    if (st.st_size > MS_PASSWD_MAX_BYTES)
        ms_refuse(EX_TEMPFAIL, "passwd-file-unsafe: %s is larger than %ld bytes",
                  pol->passwd_file, (long) MS_PASSWD_MAX_BYTES);
    buf = checked_alloc((size_t) st.st_size, "the passwd-file");
    len = ms_read_all(fd, buf, (size_t) st.st_size);
    (void) close(fd);
    if (len < 0)
        ms_refuse(EX_TEMPFAIL, "passwd-file-unsafe: %s cannot be read or changed while read",
                  pol->passwd_file);
    rc = ms_passwd_file_find(buf, (size_t) len, user, t, err, sizeof(err));
    free(buf);
    if (rc < 0)
        ms_refuse(EX_TEMPFAIL, "%s (in %s)", err, pol->passwd_file);
    if (rc == 0)
        ms_refuse(EX_NOUSER, "unknown-user: %s", user);
}

/* Drop to uid/gid with exactly these groups, then prove it: any surprise is fatal.
 * Used for the target (step 7) and for the lookup child. */
static void drop_privileges(uid_t uid, gid_t gid, const gid_t *groups, size_t n)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg, now[MS_MAX_TARGET_GROUPS];
    struct cap_header h = {CAP_VERSION_3, 0};
    struct cap_data caps[2];
    int got, i;
    size_t k;

    /* Ambient capabilities survive exec for non-root; clear them while we can. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        ms_refuse(EX_TEMPFAIL, "drop: cannot clear ambient capabilities");
    /* Groups first, while we still may: afterwards setgroups is refused to us. */
    if (setgroups(n, groups) != 0)
        ms_refuse(EX_TEMPFAIL, "drop: setgroups failed: %s", strerror(errno));
    /* gid before uid: once the uid is gone, so is the right to change the gid. */
    if (setresgid(gid, gid, gid) != 0)
        ms_refuse(EX_TEMPFAIL, "drop: setresgid failed: %s", strerror(errno));
    /* Real, effective and saved uid together: no saved root to come back to. */
    if (setresuid(uid, uid, uid) != 0)
        ms_refuse(EX_TEMPFAIL, "drop: setresuid failed: %s", strerror(errno));
    /* Verify, as OpenSSH's permanently_set_uid does: read every id back. */
    if (getresuid(&ru, &eu, &su) != 0 || ru != uid || eu != uid || su != uid)
        ms_refuse(EX_TEMPFAIL, "drop-verify: uids are not all %lu", (unsigned long) uid);
    if (getresgid(&rg, &eg, &sg) != 0 || rg != gid || eg != gid || sg != gid)
        ms_refuse(EX_TEMPFAIL, "drop-verify: gids are not all %lu", (unsigned long) gid);
    /* At most MS_MAX_TARGET_GROUPS were set; more now (EINVAL) is a surprise too. */
    got = getgroups(MS_MAX_TARGET_GROUPS, now);
    if (got < 0 || (size_t) got != n)
        ms_refuse(EX_TEMPFAIL, "drop-verify: supplementary groups differ");
    for (i = 0; i < got; i++) {
        for (k = 0; k < n && groups[k] != now[i]; k++)
            ;
        if (k == n)
            ms_refuse(EX_TEMPFAIL, "drop-verify: supplementary groups differ");
    }
    /* The proof: root must be out of reach now. */
    if (setuid(0) != -1 || setgid(0) != -1 || seteuid(0) != -1)
        ms_refuse(EX_TEMPFAIL, "drop-verify: could regain root");
    /* Leave no capability in any set; then read the sets back. */
    memset(caps, 0, sizeof(caps));
    if (syscall(SYS_capset, &h, caps) != 0)
        ms_refuse(EX_TEMPFAIL, "drop-verify: capset failed: %s", strerror(errno));
    h.version = CAP_VERSION_3;
    h.pid = 0;
    if (syscall(SYS_capget, &h, caps) != 0)
        ms_refuse(EX_TEMPFAIL, "drop-verify: capget failed: %s", strerror(errno));
    for (i = 0; i < 2; i++)
        if (caps[i].effective || caps[i].permitted || caps[i].inheritable)
            ms_refuse(EX_TEMPFAIL, "drop-verify: capabilities remain after the drop");
}

/* Step 5c: an unprivileged child (the policy's lookup user) runs the engine in lookup
 * mode (lookup_entry --lookup USER) for userdbs only the engine can read; it answers
 * one bounded line, or exits 67 for an unknown user. */
static void resolve_lookup(const struct ms_policy *pol, const char *interpreter,
                           const char *lookup_entry, const char *user, const char *config,
                           struct ms_target *t)
{
    static char answer[MS_LOOKUP_ANSWER_MAX + 1];
    /* The child reads the same settings file as the delivery will: the caller's -c
     * (ms_args_parse admits -c only when the policy has caller_config = yes). */
    char err[512], *child_argv[] = {(char *) interpreter, "-I", "-S", (char *) lookup_entry,
                                    "--lookup", (char *) user, NULL, NULL, NULL};
    char env_path[] = "PATH=/usr/local/bin:/usr/bin:/bin", env_flag[] = "MAILSLOT_RELAY_LOOKUP=1";
    char *child_env[] = {env_path, env_flag, NULL};
    struct passwd *pw;
    struct pollfd pfd;
    size_t used = 0;
    uid_t luid;
    gid_t lgid;
    pid_t pid;
    int p[2], status, timed_out = 0;

    errno = 0;
    pw = getpwnam(pol->lookup_user);
    if (pw == NULL)
        ms_refuse(EX_TEMPFAIL, "policy-lookup-user: %s does not exist", pol->lookup_user);
    if (pw->pw_uid == 0 || pw->pw_gid == 0)
        ms_refuse(EX_TEMPFAIL, "policy-lookup-user: %s is root", pol->lookup_user);
    luid = pw->pw_uid;
    lgid = pw->pw_gid;
    endpwent();
    if (config != NULL) {
        child_argv[6] = "-c";
        child_argv[7] = (char *) config;
    }
    if (pipe2(p, O_CLOEXEC) != 0)
        ms_refuse(EX_TEMPFAIL, "lookup: pipe failed: %s", strerror(errno));
    pid = fork();
    if (pid < 0)
        ms_refuse(EX_TEMPFAIL, "lookup: fork failed: %s", strerror(errno));
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        /* The child's stdout is the pipe, its stdin nothing: not the message. */
        if (devnull < 0 || dup2(devnull, 0) != 0 || dup2(p[1], 1) != 1)
            _exit(EX_TEMPFAIL);
        drop_privileges(luid, lgid, &lgid, 1);
        /* The child never needs to gain privileges (it sends no mail). */
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || chdir("/") != 0)
            _exit(EX_TEMPFAIL);
        ms_unblock_signals();
        execve(interpreter, child_argv, child_env);
        _exit(EX_TEMPFAIL);
    }
    (void) close(p[1]);
    pfd.fd = p[0];
    pfd.events = POLLIN;
    for (;;) {
        ssize_t r;
        int pr = poll(&pfd, 1, LOOKUP_TIMEOUT_MS);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            timed_out = 1;
            break;
        }
        r = read(p[0], answer + used, sizeof(answer) - 1 - used);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        used += (size_t) r;
        if (used == sizeof(answer) - 1)
            break;                        /* too long: parse refuses it below */
    }
    (void) close(p[0]);
    if (timed_out)
        (void) kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            ms_refuse(EX_TEMPFAIL, "lookup: waitpid failed: %s", strerror(errno));
    if (timed_out)
        ms_refuse(EX_TEMPFAIL, "lookup: no answer within %d s", LOOKUP_TIMEOUT_MS / 1000);
    if (WIFEXITED(status) && WEXITSTATUS(status) == EX_NOUSER)
        ms_refuse(EX_NOUSER, "unknown-user: %s", user);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        ms_refuse(EX_TEMPFAIL, "lookup: the lookup child failed");
    memset(t, 0, sizeof(*t));
    (void) snprintf(t->user, sizeof(t->user), "%s", user);
    if (ms_lookup_answer_parse(answer, used, t, err, sizeof(err)) != 0)
        ms_refuse(EX_TEMPFAIL, "%s", err);
}

/* The interpreter and entries must be root's, through root's directories: whoever
 * can change them runs code as every target. The path is walked as written (no
 * realpath first: a symlink is followed only where root put it, trusted.h), and out
 * gets it as written: the relay execs that very path. */
static void check_program(const char *what, const char *path, char *out, size_t outlen)
{
    const char *why = "";
    struct stat st;
    int fd;

    if (strlen(path) >= outlen)
        ms_refuse(EX_TEMPFAIL, "engine-unsafe: %s %s: path too long", what, path);
    fd = ms_open_program(path, &st, &why);
    if (fd < 0)
        ms_refuse(EX_TEMPFAIL, "engine-unsafe: %s %s %s", what, path, why);
    (void) close(fd);
    memcpy(out, path, strlen(path) + 1);
}

/* The package tree an entry imports from (the policy's engine_tree, else "python"
 * beside the entry, where pyside/entry/mailslot-lda looks), and everything in it,
 * __pycache__ included: a module or .pyc someone else can write is code run as
 * every target. */
static void check_engine_tree(const struct ms_policy *pol, const char *entry)
{
    char tree[MS_PATH_MAX], where[MS_PATH_MAX];
    const char *why = "", *slash;

    if (pol->engine_tree[0] != '\0') {
        (void) snprintf(tree, sizeof(tree), "%s", pol->engine_tree);
    } else {
        slash = strrchr(entry, '/');
        if (slash == NULL || (size_t) (slash - entry) + sizeof("/python") > sizeof(tree))
            ms_refuse(EX_TEMPFAIL, "engine-unsafe: entry %s has no directory", entry);
        memcpy(tree, entry, (size_t) (slash - entry));
        memcpy(tree + (slash - entry), "/python", sizeof("/python"));
    }
    if (ms_check_tree(tree, &why, where, sizeof(where)) != 0)
        ms_refuse(EX_TEMPFAIL, "engine-unsafe: engine tree %s%s %s%s", tree, where, why,
                  pol->engine_tree[0] == '\0' ? " (engine_tree not set: the directory "
                  "\"python\" beside the entry)" : "");
}

int main(int argc, char **argv)
{
    static char interpreter[PATH_MAX], entry[PATH_MAX], lookup_entry[PATH_MAX];
    static char env_buf[MS_ENV_BUF];
    static char user[MS_USER_MAX + 1], engine_user[MS_USER_MAX + 1];
    static struct ms_policy pol;
    static struct caller caller;
    static struct ms_target t;
    char err[512], *env[MS_ENV_MAX + 1];
    const char *engine_argv[4 + 2 * 7 + 2 * MS_MAX_SETTINGS + 4 + 1];
    unsigned long caller_gids[MS_MAX_CALLER_GROUPS], extra_gids[MS_MAX_EXTRA_GROUPS];
    unsigned long mail_gid;
    gid_t groups[MS_MAX_TARGET_GROUPS];
    struct ms_args args;
    size_t i;
    char **caller_env;
    int rc;

    /* Step 1: the process state, stdio (fd 0 must be the message), then the
     * caller's limits, before anything could be crashed by them. */
    caller_env = ms_hygiene_start("mailslot-relay", 1);
    check_limits();
    read_caller(&caller);
    if (geteuid() != 0)
        ms_refuse(EX_TEMPFAIL, "relay-not-root: mailslot-relay must be installed setuid root");

    /* Step 2. */
    load_policy(&pol);

    /* Step 3. */
    group_ids("caller group", pol.caller_groups, pol.n_caller_groups, caller_gids);
    check_caller(&caller, caller_gids, pol.n_caller_groups);
    mail_gid = mail_group_id();
    group_ids("target_extra_groups group", pol.extra_groups, pol.n_extra_groups, extra_gids);
    check_extra_groups(&pol, extra_gids, caller_gids, mail_gid);

    /* Step 4. */
    rc = ms_args_parse(argc, argv, &pol, &args, err, sizeof(err));
    if (rc != MS_ARGS_OK)
        ms_refuse(rc, "%s", err);
    /* The canonical name (detail stripped, then username_format): what is resolved
     * and announced. Why: if the relay resolved "Bob" or "bob+lists" while the
     * engine's userdb looked up "bob", the two could name different users (or one a
     * user, the other none). engine_user is the -d the engine gets: the same name
     * with its detail when the engine's rule leads back to user (ms_user_names). */
    rc = ms_user_names(&pol, args.user, user, engine_user, sizeof(user), err, sizeof(err));
    if (rc < 0)
        ms_refuse(EX_TEMPFAIL, "%s (in %s)", err, MAILSLOT_POLICY_PATH);
    if (rc == 0)
        ms_refuse(EX_NOUSER, "unknown-user: %s: %s", args.user, err);

    /* Step 5. The engine's programs and tree are checked first: the lookup child
     * runs them. */
    check_program("interpreter", pol.interpreter, interpreter, sizeof(interpreter));
    check_program("entry", pol.entry, entry, sizeof(entry));
    check_engine_tree(&pol, entry);
    if (pol.resolver == MS_RESOLVE_NSS)
        resolve_nss(user, &t);
    else if (pol.resolver == MS_RESOLVE_PASSWD_FILE)
        resolve_passwd_file(&pol, user, &t);
    else {
        check_program("lookup_entry", pol.lookup_entry, lookup_entry, sizeof(lookup_entry));
        if (pol.engine_tree[0] == '\0' && strcmp(lookup_entry, entry) != 0)
            check_engine_tree(&pol, lookup_entry);
        resolve_lookup(&pol, interpreter, lookup_entry, user, args.config, &t);
    }
    /* The engine's groups: the target's primary gid, plus only those of its groups
     * the policy names in target_extra_groups (issue: a target in mail, sudo, disk
     * or docker kept those groups in the engine). */
    ms_target_groups(&t, extra_gids, pol.n_extra_groups);
    if (ms_target_check(&pol, &t, caller_gids, pol.n_caller_groups, mail_gid, err,
                        sizeof(err)) != 0)
        ms_refuse(EX_TEMPFAIL, "%s", err);

    /* Step 6. t.user (USER, LOGNAME, MAILSLOT_RELAY_USER) is the account resolved;
     * the engine's -d keeps the detail, if any. */
    args.user = engine_user;
    if (ms_env_build(caller_env, &pol, args.keep_env, &t, env_buf, sizeof(env_buf), env,
                     MS_ENV_MAX + 1, err, sizeof(err)) < 0)
        ms_refuse(EX_TEMPFAIL, "%s", err);
    if (ms_args_engine_argv(&args, interpreter, entry, engine_argv,
                            sizeof(engine_argv) / sizeof(engine_argv[0])) < 0)
        ms_refuse(EX_TEMPFAIL, "engine-argv: command line too long for the engine");

    /* Step 7. */
    for (i = 0; i < t.n_groups; i++)
        groups[i] = (gid_t) t.groups[i];
    drop_privileges((uid_t) t.uid, (gid_t) t.gid, groups, t.n_groups);
    /* no_new_privs also stops the engine's sendmail (Postfix's is setgid postdrop),
     * so it is the policy's choice: set it where outgoing mail goes over SMTP. */
    if (pol.no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        ms_refuse(EX_TEMPFAIL, "drop: cannot set no_new_privs");

    /* Step 8. As the target: a home it cannot enter is its own business, but a home
     * that does not exist yet is normal for a new virtual user (the engine makes it). */
    if (chdir(t.home) != 0) {
        if (errno != ENOENT || chdir("/") != 0)
            ms_refuse(EX_TEMPFAIL, "target-home: cannot enter %s: %s", t.home, strerror(errno));
    }
    ms_unblock_signals();
    execve(interpreter, (char *const *) engine_argv, env);
    ms_refuse(EX_TEMPFAIL, "exec: %s: %s", interpreter, strerror(errno));
}
