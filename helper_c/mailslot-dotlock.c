/*
 * mailslot-dotlock -- lock, unlock, touch or create the caller's own mail spool file.
 *
 * Usage: mailslot-dotlock lock|unlock|touch|create <spool-file>
 *
 * Installed root:mail 2755. The spool directory (/var/mail on Debian, root:mail 2775)
 * lets only the mail group create files, so a delivery agent running as the user
 * cannot create <user>.lock there. This helper holds the mail group for that one job:
 *
 *   lock    create <spool>/<name>.lock, NFS-safe: a unique temp file holding
 *           "<pid>:<host>" (the pid of our parent, the engine that holds the lock),
 *           hard-linked to the lock name, success judged by the temp file's link
 *           count; a stale lock (its pid dead on this host, or untouched for
 *           STALE_SECONDS) is removed; tries LOCK_ATTEMPTS times, LOCK_DELAY apart
 *   unlock  remove <name>.lock if it is ours (owned by the caller, naming our parent)
 *   touch   refresh the lock's mtime, so a long delivery does not look stale
 *   create  create <spool>/<name> O_EXCL|O_NOFOLLOW, mode 0600, owned by the caller
 *
 * <spool-file> must be exactly SPOOL_DIR/<name>, where <name> is the login of the
 * calling real uid; lock/unlock/touch also require the spool file to exist, be a
 * regular file (not a symlink) owned by that uid with link count 1.
 *
 * What it trusts: the kernel's real uid and the passwd entry (NSS) it maps to; the
 * spool directory, fixed at build time, which must be root-owned. Not trusted: argv,
 * the environment, inherited fds or signal state, anything found in the spool
 * directory (every object is checked by fstatat/fstat without following symlinks).
 * The mail group is the effective gid only around the calls that need it.
 *
 * Exit codes: 0 done; 64 EX_USAGE bad command line; 67 EX_NOUSER the caller's uid
 * has no login; 75 EX_TEMPFAIL lock not obtained in time, I/O error, unsafe spool
 * directory; 77 EX_NOPERM a refusal (not the caller's own spool file, a symlink,
 * wrong owner or link count, a lock that is not ours). Diagnostics: one line
 * "mailslot-dotlock: <rule>: <detail>" on stderr and syslog.
 */
#define _GNU_SOURCE
#include "hygiene.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#ifndef MAILSLOT_SPOOL_DIR
#define MAILSLOT_SPOOL_DIR "/var/mail"
#endif

/* A lock untouched this long is stale: Dovecot's mbox_dotlock_change_timeout (2 min). */
#define STALE_SECONDS 120
/* Attempts and delay: Postfix's deliver_lock_attempts (20) and deliver_lock_delay (1 s).
 * The tests build with fewer attempts (-DMAILSLOT_LOCK_ATTEMPTS=2). */
#ifndef MAILSLOT_LOCK_ATTEMPTS
#define MAILSLOT_LOCK_ATTEMPTS 20
#endif
#define LOCK_ATTEMPTS MAILSLOT_LOCK_ATTEMPTS
#define LOCK_DELAY_SECONDS 1
/* "<pid>:<host>": pid (10 digits), ':', host (HOST_NAME_MAX 64), newline. */
#define LOCK_CONTENT_MAX 128

static gid_t mail_gid;     /* the set-group-id we were installed with */
static gid_t caller_gid;   /* the caller's real gid */

/* Hold the mail group only for the calls that create or remove names in the spool
 * directory: every other call runs with the caller's own gid. */
static void raise_mail_group(void)
{
    if (setresgid((gid_t) -1, mail_gid, (gid_t) -1) != 0)
        ms_refuse(EX_TEMPFAIL, "privilege: cannot take the mail group");
}

static void lower_mail_group(void)
{
    if (setresgid((gid_t) -1, caller_gid, (gid_t) -1) != 0)
        ms_refuse(EX_TEMPFAIL, "privilege: cannot put down the mail group");
}

/* A login we are willing to make a file name of. */
static int login_is_safe(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > 64 || s[0] == '.' || s[0] == '-')
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c <= 0x20 || c >= 0x7f || c == '/')
            return 0;
    }
    return 1;
}

/* The spool file as we require it: regular, not a symlink, the caller's, one link. */
static void check_spool_file(int dirfd, const char *name, uid_t uid)
{
    struct stat st;

    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            ms_refuse(EX_TEMPFAIL, "spool-missing: %s/%s does not exist (create it first)",
                      MAILSLOT_SPOOL_DIR, name);
        ms_refuse(EX_TEMPFAIL, "spool-io: %s/%s: %s", MAILSLOT_SPOOL_DIR, name,
                  strerror(errno));
    }
    if (S_ISLNK(st.st_mode))
        ms_refuse(EX_NOPERM, "spool-symlink: %s/%s is a symlink", MAILSLOT_SPOOL_DIR, name);
    if (!S_ISREG(st.st_mode))
        ms_refuse(EX_NOPERM, "spool-type: %s/%s is not a regular file", MAILSLOT_SPOOL_DIR,
                  name);
    if (st.st_uid != uid)
        ms_refuse(EX_NOPERM, "spool-owner: %s/%s is not owned by uid %lu", MAILSLOT_SPOOL_DIR,
                  name, (unsigned long) uid);
    /* A second link could be a hard link to a file elsewhere, planted to be locked. */
    if (st.st_nlink != 1)
        ms_refuse(EX_NOPERM, "spool-links: %s/%s has %lu links", MAILSLOT_SPOOL_DIR, name,
                  (unsigned long) st.st_nlink);
}

/* Read "<pid>:<host>" from the lock named lockname; 0 on success. */
static int read_lock_owner(int dirfd, const char *lockname, long *pid, char *host,
                           size_t hostlen)
{
    char buf[LOCK_CONTENT_MAX + 1], *colon, *end;
    long len;
    int fd;

    fd = openat(dirfd, lockname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    len = ms_read_all(fd, buf, LOCK_CONTENT_MAX);
    (void) close(fd);
    if (len <= 0)
        return -1;
    buf[len] = '\0';
    if (buf[len - 1] == '\n')
        buf[len - 1] = '\0';
    colon = strchr(buf, ':');
    if (colon == NULL)
        return -1;
    *colon = '\0';
    errno = 0;
    *pid = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || *end != '\0' || *pid <= 0)
        return -1;
    (void) snprintf(host, hostlen, "%s", colon + 1);
    return 0;
}

/* Dovecot's and Postfix's rules: a lock is stale when the process that holds it is
 * gone (same host only: a pid means nothing elsewhere) or it has not been touched
 * for STALE_SECONDS. */
static int lock_is_stale(int dirfd, const char *lockname, const char *myhost,
                         const struct stat *st)
{
    char host[LOCK_CONTENT_MAX];
    long pid;

    if (read_lock_owner(dirfd, lockname, &pid, host, sizeof(host)) == 0
        && strcmp(host, myhost) == 0 && kill((pid_t) pid, 0) != 0 && errno == ESRCH)
        return 1;
    return time(NULL) - st->st_mtime > STALE_SECONDS;
}

static void do_lock(int dirfd, const char *name, const char *host)
{
    char lockname[NAME_MAX + 1], tmpname[NAME_MAX + 1], content[LOCK_CONTENT_MAX];
    struct stat st, st2;
    int attempt, fd, n;
    size_t clen;

    if ((size_t) snprintf(lockname, sizeof(lockname), "%s.lock", name) >= sizeof(lockname)
        || (size_t) snprintf(tmpname, sizeof(tmpname), ".%s.lock.%.64s.%ld", name, host,
                             (long) getpid()) >= sizeof(tmpname))
        ms_refuse(EX_USAGE, "spool-name: %s is too long for a lock name", name);
    n = snprintf(content, sizeof(content), "%ld:%.64s\n", (long) getppid(), host);
    clen = (size_t) n;
    for (attempt = 0; attempt < LOCK_ATTEMPTS; attempt++) {
        raise_mail_group();
        /* The temp name is ours alone (host + pid); O_EXCL|O_NOFOLLOW makes sure. */
        (void) unlinkat(dirfd, tmpname, 0);
        fd = openat(dirfd, tmpname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0600);
        if (fd < 0)
            ms_refuse(EX_TEMPFAIL, "lock-io: cannot create %s: %s", tmpname, strerror(errno));
        if (write(fd, content, clen) != (ssize_t) clen || close(fd) != 0) {
            (void) unlinkat(dirfd, tmpname, 0);
            ms_refuse(EX_TEMPFAIL, "lock-io: cannot write %s", tmpname);
        }
        /* link() is atomic even over NFS; its return value is not (a lost reply), so
         * success is judged by the temp file's link count. */
        if (linkat(dirfd, tmpname, dirfd, lockname, 0) != 0) {
            /* EEXIST, or a reply lost over NFS: the link count below decides. */
        }
        if (fstatat(dirfd, tmpname, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_nlink == 2) {
            (void) unlinkat(dirfd, tmpname, 0);
            lower_mail_group();
            return;
        }
        (void) unlinkat(dirfd, tmpname, 0);
        if (fstatat(dirfd, lockname, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (!S_ISREG(st.st_mode))
                ms_refuse(EX_NOPERM, "lock-type: %s is not a regular file", lockname);
            if (lock_is_stale(dirfd, lockname, host, &st)
                && fstatat(dirfd, lockname, &st2, AT_SYMLINK_NOFOLLOW) == 0
                && st2.st_ino == st.st_ino && st2.st_mtime == st.st_mtime) {
                /* Same inode, same mtime as judged: remove it and try again now. */
                (void) unlinkat(dirfd, lockname, 0);
                lower_mail_group();
                continue;
            }
        }
        lower_mail_group();
        (void) sleep(LOCK_DELAY_SECONDS);
    }
    ms_refuse(EX_TEMPFAIL, "lock-timeout: %s/%s is locked by another process",
              MAILSLOT_SPOOL_DIR, lockname);
}

/* The lock must exist, be a regular file of the caller's, and name our parent. */
static void check_own_lock(int dirfd, const char *lockname, uid_t uid, const char *host)
{
    char lhost[LOCK_CONTENT_MAX];
    struct stat st;
    long pid;

    if (fstatat(dirfd, lockname, &st, AT_SYMLINK_NOFOLLOW) != 0)
        ms_refuse(EX_TEMPFAIL, "lock-missing: %s/%s does not exist", MAILSLOT_SPOOL_DIR,
                  lockname);
    if (!S_ISREG(st.st_mode) || st.st_uid != uid)
        ms_refuse(EX_NOPERM, "lock-not-ours: %s/%s is not the caller's regular file",
                  MAILSLOT_SPOOL_DIR, lockname);
    if (read_lock_owner(dirfd, lockname, &pid, lhost, sizeof(lhost)) != 0
        || pid != (long) getppid() || strcmp(lhost, host) != 0)
        ms_refuse(EX_NOPERM, "lock-not-ours: %s/%s is held by another process",
                  MAILSLOT_SPOOL_DIR, lockname);
}

static void do_unlock(int dirfd, const char *name, uid_t uid, const char *host)
{
    char lockname[NAME_MAX + 1];

    if ((size_t) snprintf(lockname, sizeof(lockname), "%s.lock", name) >= sizeof(lockname))
        ms_refuse(EX_USAGE, "spool-name: %s is too long for a lock name", name);
    check_own_lock(dirfd, lockname, uid, host);
    raise_mail_group();
    /* unlinkat never follows a symlink: it removes the name we checked. */
    if (unlinkat(dirfd, lockname, 0) != 0)
        ms_refuse(EX_TEMPFAIL, "lock-io: cannot remove %s: %s", lockname, strerror(errno));
    lower_mail_group();
}

static void do_touch(int dirfd, const char *name, uid_t uid, const char *host)
{
    char lockname[NAME_MAX + 1];
    struct stat st;
    int fd;

    if ((size_t) snprintf(lockname, sizeof(lockname), "%s.lock", name) >= sizeof(lockname))
        ms_refuse(EX_USAGE, "spool-name: %s is too long for a lock name", name);
    check_own_lock(dirfd, lockname, uid, host);
    /* Touch through an fd opened without following symlinks, checked again. */
    fd = openat(dirfd, lockname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != uid
        || futimens(fd, NULL) != 0)
        ms_refuse(EX_TEMPFAIL, "lock-io: cannot touch %s", lockname);
    (void) close(fd);
}

static void do_create(int dirfd, const char *name, uid_t uid)
{
    int fd;

    raise_mail_group();
    /* O_EXCL|O_NOFOLLOW: never open what someone else put under this name. */
    fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    lower_mail_group();
    if (fd < 0) {
        if (errno == EEXIST) {
            /* Already there: fine if it is the caller's own spool file. */
            check_spool_file(dirfd, name, uid);
            return;
        }
        ms_refuse(EX_TEMPFAIL, "spool-io: cannot create %s/%s: %s", MAILSLOT_SPOOL_DIR, name,
                  strerror(errno));
    }
    /* The file is the caller's, readable by nobody else, whatever the umask said. */
    if (fchown(fd, uid, (gid_t) -1) != 0 || fchmod(fd, 0600) != 0 || fsync(fd) != 0) {
        (void) close(fd);
        raise_mail_group();
        (void) unlinkat(dirfd, name, 0);
        ms_refuse(EX_TEMPFAIL, "spool-io: cannot set owner and mode of %s/%s",
                  MAILSLOT_SPOOL_DIR, name);
    }
    if (close(fd) != 0)
        ms_refuse(EX_TEMPFAIL, "spool-io: cannot close %s/%s", MAILSLOT_SPOOL_DIR, name);
}

int main(int argc, char **argv)
{
    char login[65], host[65], expected[PATH_MAX];
    const char *cmd;
    struct passwd *pw;
    struct stat st;
    uid_t uid;
    int dirfd;

    (void) ms_hygiene_start("mailslot-dotlock");
    uid = getuid();
    caller_gid = getgid();
    mail_gid = getegid();
    /* The effective uid is the caller's own; make all three uids the real one. */
    if (setresuid(uid, uid, uid) != 0)
        ms_refuse(EX_TEMPFAIL, "privilege: cannot set the uids to the real uid");
    /* Keep the mail group as the saved gid only, raised around spool operations. */
    lower_mail_group();
    if (argc != 3 || argv[1] == NULL || argv[2] == NULL)
        ms_refuse(EX_USAGE, "usage: mailslot-dotlock lock|unlock|touch|create <spool-file>");
    cmd = argv[1];
    if (strcmp(cmd, "lock") != 0 && strcmp(cmd, "unlock") != 0 && strcmp(cmd, "touch") != 0
        && strcmp(cmd, "create") != 0)
        ms_refuse(EX_USAGE, "usage: unknown command (lock, unlock, touch or create)");

    errno = 0;
    pw = getpwuid(uid);
    if (pw == NULL)
        ms_refuse(EX_NOUSER, "unknown-user: uid %lu has no login", (unsigned long) uid);
    if (uid == 0)
        ms_refuse(EX_NOPERM, "caller-root: root needs no helper");
    if (!login_is_safe(pw->pw_name))
        ms_refuse(EX_NOPERM, "spool-name: login of uid %lu is not a safe file name",
                  (unsigned long) uid);
    (void) snprintf(login, sizeof(login), "%s", pw->pw_name);
    endpwent();

    /* Only the caller's own spool file, named exactly as the configured directory
     * plus the caller's login: no "..", no other directory, no other user. */
    if ((size_t) snprintf(expected, sizeof(expected), "%s/%s", MAILSLOT_SPOOL_DIR, login)
            >= sizeof(expected)
        || strcmp(argv[2], expected) != 0)
        ms_refuse(EX_NOPERM, "not-own-spool: %s is not %s", argv[2], expected);

    if (gethostname(host, sizeof(host)) != 0)
        ms_refuse(EX_TEMPFAIL, "hostname: cannot read the host name");
    host[sizeof(host) - 1] = '\0';
    for (char *h = host; *h != '\0'; h++)
        if (*h == '/' || *h == ':' || (unsigned char) *h <= 0x20 || (unsigned char) *h >= 0x7f)
            *h = '_';

    /* The spool directory itself: no symlink at its end, root-owned. */
    dirfd = open(MAILSLOT_SPOOL_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0 || fstat(dirfd, &st) != 0)
        ms_refuse(EX_TEMPFAIL, "spool-dir: cannot open %s", MAILSLOT_SPOOL_DIR);
    if (st.st_uid != 0 || ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)))
        ms_refuse(EX_TEMPFAIL, "spool-dir: %s is not root-owned or is world-writable",
                  MAILSLOT_SPOOL_DIR);

    if (strcmp(cmd, "create") == 0) {
        do_create(dirfd, login, uid);
        return EX_OK;
    }
    check_spool_file(dirfd, login, uid);
    if (strcmp(cmd, "lock") == 0)
        do_lock(dirfd, login, host);
    else if (strcmp(cmd, "unlock") == 0)
        do_unlock(dirfd, login, uid, host);
    else
        do_touch(dirfd, login, uid, host);
    return EX_OK;
}
