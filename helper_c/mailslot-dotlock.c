/*
 * mailslot-dotlock -- lock, unlock, touch or create the caller's own mail spool file.
 *
 * Usage: mailslot-dotlock lock|trylock|unlock|touch|create <spool-file>
 *
 * Installed root:mail 2755. The spool directory (/var/mail on Debian, root:mail 2775)
 * lets only the mail group create files, so a delivery agent running as the user
 * cannot create <user>.lock there. This helper holds the mail group for that one job:
 *
 *   lock    create <spool>/<name>.lock, NFS-safe and born whole: a unique temp file
 *           holding "<pid>:<host>" (the pid of our parent, the engine that holds
 *           the lock) is written first and only then hard-linked to the lock name,
 *           success judged by the temp file's link count, so a kill at any point
 *           never leaves an empty lock (at worst a temp file, which no one waits
 *           on); a stale lock (the rule below) is removed; checks LOCK_ATTEMPTS
 *           times, LOCK_DELAY_SECONDS apart
 *   trylock the same, checking once (Dovecot's DOTLOCK_CREATE_FLAG_NONBLOCK; a
 *           stale lock is still broken): for a caller that already holds another
 *           lock and must not wait for this one while holding it
 *   unlock  remove <name>.lock if it is ours (owned by the caller, naming our parent)
 *   touch   refresh the lock's mtime, so a long delivery does not look stale
 *   create  create <spool>/<name> O_EXCL|O_NOFOLLOW, mode 0600, owned by the caller
 *
 * <spool-file> must be exactly SPOOL_DIR/<name>, where <name> is the login of the
 * calling real uid; lock/unlock/touch also require the spool file to exist, be a
 * regular file (not a symlink) owned by that uid with link count 1.
 *
 * When a lock is stale: Dovecot 2.3's rule, src/lib/file-dotlock.c check_lock() and
 * update_change_info(), with the stale timeout mbox storage gives it
 * (src/lib-storage/index/mbox/mbox-lock.c: set.stale_timeout =
 * mbox_dotlock_change_timeout, default 2 min in mbox-settings.c). The
 * immediate_stale_timeout of Dovecot's early dotlock code is gone (not in 1.1 and
 * later); we have none either.
 *   1. A lock changed (mtime) in the last STALE_PID_CHECK_SECS is not read: its
 *      writer is most likely alive and may not have written its pid yet.
 *   2. Otherwise, if it holds "<pid>:<host>" with host equal to our host name and a
 *      decimal pid > 0, the pid decides alone: a live process (kill(pid, 0)
 *      succeeds or fails with anything but ESRCH, e.g. EPERM for another uid's
 *      process) is never overridden, however old the lock; a dead one (ESRCH), or
 *      the pid we would write ourselves (our parent's: it is locking again, or the
 *      lock is a leftover of a pid reused), is overridden at once if the lock has
 *      not changed since it was judged.
 *   3. Without a local pid (another host, other content, unreadable), the lock is
 *      overridden once neither it nor the spool file has changed for
 *      CHANGE_TIMEOUT seconds. "Changed" is Dovecot's: a file's change time is its
 *      ctime (its mtime if newer but not in the future) when first seen, and the
 *      moment a later look sees another inode, size, mtime or ctime. So setting a
 *      lock's mtime into the past does not age it: its ctime is now.
 *   0. Before all of these (not Dovecot's): a lock whose ctime is before the system
 *      booted, and that is empty (no byte but NUL or white space) or names this
 *      host without a live pid, is overridden at once. No process that took it
 *      runs now, and a power cut can leave a lock born whole empty all the same
 *      (its name reached the disk, its content did not), which rule 3 would make
 *      every delivery wait CHANGE_TIMEOUT for. The boot moment is the realtime
 *      clock minus CLOCK_BOOTTIME, from the kernel, never from argv or the
 *      environment; judged from the opened lock (fstat of the fd read). A live
 *      local pid still decides alone: a realtime clock stepped forward moves the
 *      computed boot later, and must not cost a live holder its lock.
 *   Dovecot's mbox code may also veto breaking an aged lock when the next lock in
 *   mbox_write_locks is still held (dotlock_callback); the helper does not know
 *   that list: the engine does that check when it breaks a lock itself.
 *
 * What it trusts: the kernel's real uid and the passwd entry (NSS) it maps to; the
 * spool directory, fixed at build time, which must be root-owned. Not trusted: argv,
 * the environment, inherited fds or signal state, anything found in the spool
 * directory (every object is checked by fstatat/fstat without following symlinks).
 * The mail group is the effective gid only around the calls that need it.
 *
 * Which locks may be removed at all: only a plausible one, owned by the caller or
 * root and no larger than LOCK_READ_MAX; any other file at the lock name is refused
 * at once (lock-foreign, lock-implausible: 75), never judged stale. Logins ending
 * in ".lock" are refused (spool-name): their spool file is another login's lock.
 *
 * Exit codes: 0 done; 64 EX_USAGE bad command line; 67 EX_NOUSER the caller's uid
 * has no login; 75 EX_TEMPFAIL lock not obtained in time (lock-timeout, also for
 * trylock), a file at the lock name that is not a plausible lock, I/O error, unsafe
 * spool directory; 77 EX_NOPERM a refusal (not the caller's own spool file, a
 * symlink, wrong owner or link count, a lock that is not ours, something other than
 * a regular file at the lock name, a login that ends in ".lock"). Diagnostics: one line
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

/* A lock without a live local pid is stale when it and the spool file have been
 * unchanged this long: Dovecot's mbox_dotlock_change_timeout (2 min). The tests
 * build with a shorter one (-DMAILSLOT_DOTLOCK_CHANGE_TIMEOUT=3). */
#ifndef MAILSLOT_DOTLOCK_CHANGE_TIMEOUT
#define MAILSLOT_DOTLOCK_CHANGE_TIMEOUT 120
#endif
#define CHANGE_TIMEOUT MAILSLOT_DOTLOCK_CHANGE_TIMEOUT
/* A lock changed this recently is not read for its pid (file-dotlock.c). */
#define STALE_PID_CHECK_SECS 2
/* After removing a stale lock, pause 0.1-0.2 s before creating ours, so that another
 * process overriding the same stale lock cannot remove our new one (file-dotlock.c
 * LOCK_RANDOM_USLEEP_TIME). */
#define OVERRIDE_PAUSE_MIN_NSEC 100000000L
/* Attempts and delay: Postfix's deliver_lock_attempts (20) and deliver_lock_delay (1 s).
 * The tests build with fewer attempts (-DMAILSLOT_LOCK_ATTEMPTS=2). */
#ifndef MAILSLOT_LOCK_ATTEMPTS
#define MAILSLOT_LOCK_ATTEMPTS 20
#endif
#define LOCK_ATTEMPTS MAILSLOT_LOCK_ATTEMPTS
#define LOCK_DELAY_SECONDS 1
/* "<pid>:<host>": pid (10 digits), ':', host (HOST_NAME_MAX 64), newline. What we
 * write is at most this; what we read of another program's lock is at most
 * LOCK_READ_MAX, as Dovecot's read_local_pid() (a 512-byte buffer). */
#define LOCK_CONTENT_MAX 128
#define LOCK_READ_MAX 511

static gid_t mail_gid;     /* the set-group-id we were installed with */
static gid_t caller_gid;   /* the caller's real gid */
static uid_t caller_uid;   /* the caller's real uid */

/* Hold the mail group only for the calls that create or remove names in the spool
 * directory: every other call runs with the caller's own gid. */
static void set_effective_gid(gid_t gid, const char *what)
{
    gid_t r, e, saved;

    /* Verified by reading it back: a change that did not happen is fatal, so no
     * spool call runs with a gid other than the one we meant. */
    if (setresgid((gid_t) -1, gid, (gid_t) -1) != 0 || getresgid(&r, &e, &saved) != 0
        || e != gid)
        ms_refuse(EX_TEMPFAIL, "privilege: cannot %s the mail group", what);
}

static void raise_mail_group(void)
{
    set_effective_gid(mail_gid, "take");
}

static void lower_mail_group(void)
{
    set_effective_gid(caller_gid, "put down");
}

/* A login we are willing to make a file name of. Not one ending in ".lock": the
 * spool file of a user "bob.lock" IS bob's lock name, so such a user could hold
 * bob's lock for ever, and a helper run for bob could remove that user's spool. */
static int login_is_safe(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > 64 || s[0] == '.' || s[0] == '-')
        return 0;
    if (n >= 5 && strcmp(s + n - 5, ".lock") == 0)
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

/* Parse "<pid>:<host>" from buf (len bytes read, buf[len] writable); 0 on success.
 * The pid is decimal digits only and > 0 (Dovecot's str_to_pid); one trailing
 * newline is allowed. On a bad pid, host is still filled if there is a colon. */
static int parse_lock_owner(char *buf, long len, long *pid, char *host, size_t hostlen)
{
    char *colon, *p;
    long v = 0;

    if (len <= 0)
        return -1;
    buf[len] = '\0';
    if (buf[len - 1] == '\n')
        buf[len - 1] = '\0';
    colon = strchr(buf, ':');
    if (colon == NULL || colon == buf)
        return -1;
    *colon = '\0';
    (void) snprintf(host, hostlen, "%s", colon + 1);
    for (p = buf; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || v > (long) INT_MAX / 10)
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (v <= 0 || v > (long) INT_MAX)
        return -1;
    *pid = v;
    return 0;
}

/* Read "<pid>:<host>" from the lock named lockname; 0 on success (parse_lock_owner). */
static int read_lock_owner(int dirfd, const char *lockname, long *pid, char *host,
                           size_t hostlen)
{
    char buf[LOCK_READ_MAX + 1];
    long len;
    int fd;

    fd = openat(dirfd, lockname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    len = ms_read_all(fd, buf, LOCK_READ_MAX);
    (void) close(fd);
    return parse_lock_owner(buf, len, pid, host, hostlen);
}

/* What one run has seen of a file: Dovecot's struct file_change_info. */
struct change_info {
    dev_t dev;
    ino_t ino;
    off_t size;
    time_t ctime, mtime;
};

/* What one run has seen of the lock so far: Dovecot's struct lock_info. */
struct lock_state {
    struct change_info lock, spool;
    time_t last_change;        /* the last time the lock or the spool file changed */
    int pid_read, have_pid;
};

/* Dovecot's update_change_info(): 1 if st differs from what info recorded (and
 * record it, moving *last_change on), else 0. */
static int update_change_info(const struct stat *st, struct change_info *info,
                              time_t *last_change, time_t now)
{
    time_t change_time = now;

    if (info->ino == st->st_ino && info->dev == st->st_dev && info->ctime == st->st_ctime
        && info->mtime == st->st_mtime && info->size == st->st_size)
        return 0;
    if (info->ctime == 0) {
        /* First look: the file's own change time. mtime only if newer than ctime
         * and not in the future, as mtime can be set to anything (utime). */
        change_time = st->st_mtime <= now && st->st_mtime > st->st_ctime ? st->st_mtime
                                                                         : st->st_ctime;
    }
    if (*last_change < change_time)
        *last_change = change_time;
    info->dev = st->st_dev;
    info->ino = st->st_ino;
    info->ctime = st->st_ctime;
    info->mtime = st->st_mtime;
    info->size = st->st_size;
    return 1;
}

/* The pid in the lock if it names this host, else -1 (Dovecot's read_local_pid). */
static long read_local_pid(int dirfd, const char *lockname, const char *myhost)
{
    char host[LOCK_READ_MAX + 1];
    long pid;

    if (read_lock_owner(dirfd, lockname, &pid, host, sizeof(host)) != 0
        || strcmp(host, myhost) != 0)
        return -1;
    return pid;
}

/* lstat the lock: 1 there (st filled), 0 gone, refuses on an error or a non-file. */
static int stat_lock(int dirfd, const char *lockname, struct stat *st)
{
    if (fstatat(dirfd, lockname, st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            return 0;
        ms_refuse(EX_TEMPFAIL, "lock-io: cannot stat %s: %s", lockname, strerror(errno));
    }
    /* A symlink or directory at the lock name is nobody's lock: never remove it. */
    if (!S_ISREG(st->st_mode))
        ms_refuse(EX_NOPERM, "lock-type: %s/%s is not a regular file", MAILSLOT_SPOOL_DIR,
                  lockname);
    /* Only a plausible lock may ever be judged stale and removed: one the caller's
     * programs (owner the caller) or root's made, no larger than a "pid:host" line.
     * Anything else at the name is someone's file (the spool of a user named
     * "<login>.lock", made before such logins were refused): never removed, and
     * said at once rather than waited on. The administrator must look (75). */
    if (st->st_uid != caller_uid && st->st_uid != 0)
        ms_refuse(EX_TEMPFAIL, "lock-foreign: %s/%s is owned by uid %lu, neither the caller "
                  "nor root: not a lock of this spool file, never removed", MAILSLOT_SPOOL_DIR,
                  lockname, (unsigned long) st->st_uid);
    if (st->st_size > LOCK_READ_MAX)
        ms_refuse(EX_TEMPFAIL, "lock-implausible: %s/%s holds %lld bytes, more than a lock "
                  "(%d): never removed", MAILSLOT_SPOOL_DIR, lockname,
                  (long long) st->st_size, LOCK_READ_MAX);
    return 1;
}

/* When the system booted, in nanoseconds of the realtime clock; 0 if unknown. Why
 * from the kernel's clocks and nothing else: a setgid program breaks locks by it, so
 * no caller may choose it (argv, environment). CLOCK_BOOTTIME counts from boot,
 * suspend included; /proc/stat's btime is the same difference, rounded. */
static long long boot_time_ns(void)
{
    struct timespec real, up;

    if (clock_gettime(CLOCK_REALTIME, &real) != 0 || clock_gettime(CLOCK_BOOTTIME, &up) != 0)
        return 0;
    return ((long long) real.tv_sec - up.tv_sec) * 1000000000LL
           + ((long long) real.tv_nsec - up.tv_nsec);
}

/* Rule 0 of the header: 1 if the lock judged (ls->lock) is, by its opened file, a
 * plausible lock last changed before this boot that is empty or names this host
 * without a live pid. Every doubt (cannot open or read, another inode, not
 * plausible) is 0: the ordinary rules judge it. */
static int lock_is_from_before_boot(int dirfd, const char *lockname, const char *myhost,
                                    const struct lock_state *ls)
{
    char buf[LOCK_READ_MAX + 1], host[LOCK_READ_MAX + 1];
    long long boot = boot_time_ns();
    struct stat st;
    long len, i, pid = -1;
    int fd, empty = 1;

    if (boot <= 0)
        return 0;
    fd = openat(dirfd, lockname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return 0;
    /* Judge the file whose content we read: the very inode stat_lock judged
     * plausible (regular, the caller's or root's, small), checked again here. */
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_ino != ls->lock.ino
        || st.st_dev != ls->lock.dev || (st.st_uid != caller_uid && st.st_uid != 0)
        || st.st_size > LOCK_READ_MAX
        || (long long) st.st_ctim.tv_sec * 1000000000LL + st.st_ctim.tv_nsec >= boot) {
        (void) close(fd);
        return 0;
    }
    len = ms_read_all(fd, buf, LOCK_READ_MAX);
    (void) close(fd);
    if (len < 0)
        return 0;
    /* Empty: a size that reached the disk without its data reads as NULs. */
    for (i = 0; i < len; i++)
        if (buf[i] != '\0' && buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\n'
            && buf[i] != '\r')
            empty = 0;
    if (empty)
        return 1;
    host[0] = '\0';
    if (parse_lock_owner(buf, len, &pid, host, sizeof(host)) != 0)
        pid = -1;
    if (strcmp(host, myhost) != 0)
        return 0;               /* another host's lock, or no host: rule 3 */
    /* A live local pid is never overridden here (rule 2 still judges it). */
    return pid == -1 || (kill((pid_t) pid, 0) != 0 && errno == ESRCH);
}

enum { LOCK_HELD, LOCK_ABSENT, LOCK_OVERRIDDEN };

/* Remove a lock judged stale. Why with the mail group: only the group may remove
 * names in the spool directory. unlinkat never follows a symlink. */
static int override_lock(int dirfd, const char *lockname)
{
    raise_mail_group();
    if (unlinkat(dirfd, lockname, 0) != 0 && errno != ENOENT)
        ms_refuse(EX_TEMPFAIL, "lock-io: cannot remove the stale %s: %s", lockname,
                  strerror(errno));
    lower_mail_group();
    return LOCK_OVERRIDDEN;
}

/* Dovecot's check_lock(): is the lock absent, held, or stale (then removed here)? */
static int check_lock(int dirfd, const char *name, const char *lockname, const char *myhost,
                      time_t now, struct lock_state *ls)
{
    struct stat st;
    long pid = -1;
    int changed;

    if (!stat_lock(dirfd, lockname, &st))
        return LOCK_ABSENT;
    changed = update_change_info(&st, &ls->lock, &ls->last_change, now);
    /* Why before the pid and age rules: a lock left by a power cut (empty, born
     * whole or not) would otherwise hold every delivery for CHANGE_TIMEOUT. */
    if (changed && lock_is_from_before_boot(dirfd, lockname, myhost, ls))
        return override_lock(dirfd, lockname);
    if (changed || !ls->pid_read) {
        /* First look, or someone else got the lock meanwhile. A lock written in
         * the last seconds is alive: its pid may not even be in it yet. */
        if (ls->lock.mtime >= now - STALE_PID_CHECK_SECS) {
            ls->pid_read = 0;
        } else {
            pid = read_local_pid(dirfd, lockname, myhost);
            ls->pid_read = 1;
        }
        ls->have_pid = pid != -1;
    } else if (ls->have_pid) {
        /* Same file, but the pid in it may have changed if locks came and went
         * fast: read it again. */
        pid = read_local_pid(dirfd, lockname, myhost);
        ls->have_pid = pid != -1;
    }

    if (ls->have_pid) {
        /* A local pid decides alone: a live holder keeps its lock however old. */
        if ((kill((pid_t) pid, 0) == 0 || errno != ESRCH) && pid != (long) getppid())
            return LOCK_HELD;
        /* Dead, or our own parent's: override only the very file we judged. */
        if (!stat_lock(dirfd, lockname, &st))
            return LOCK_ABSENT;
        if (update_change_info(&st, &ls->lock, &ls->last_change, now))
            return LOCK_ABSENT;         /* replaced meanwhile: judge it next time */
        return override_lock(dirfd, lockname);
    }

    if (now > ls->last_change + CHANGE_TIMEOUT) {
        /* Possibly stale: a spool file that changed also counts as activity. A
         * missing spool file counts as unchanged, as in Dovecot. */
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            (void) update_change_info(&st, &ls->spool, &ls->last_change, now);
        else if (errno != ENOENT)
            ms_refuse(EX_TEMPFAIL, "spool-io: %s/%s: %s", MAILSLOT_SPOOL_DIR, name,
                      strerror(errno));
    }
    if (now > ls->last_change + CHANGE_TIMEOUT) {
        /* Re-check the lock is the one judged before removing it. */
        if (!stat_lock(dirfd, lockname, &st))
            return LOCK_ABSENT;
        if (update_change_info(&st, &ls->lock, &ls->last_change, now))
            return LOCK_HELD;
        return override_lock(dirfd, lockname);
    }
    return LOCK_HELD;
}

/* One NFS-safe attempt to create the lock: 1 created, 0 someone else has it. */
static int try_create_lock(int dirfd, const char *lockname, const char *tmpname,
                           const char *content, size_t clen)
{
    struct stat st;
    int fd, created;

    raise_mail_group();
    /* The temp name is ours alone (host + pid); O_EXCL|O_NOFOLLOW makes sure. */
    (void) unlinkat(dirfd, tmpname, 0);
    fd = openat(dirfd, tmpname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
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
    created = fstatat(dirfd, tmpname, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_nlink == 2;
    (void) unlinkat(dirfd, tmpname, 0);
    lower_mail_group();
    return created;
}

static void pause_after_override(void)
{
    struct timespec ts = {0, OVERRIDE_PAUSE_MIN_NSEC
                                 + (long) (getpid() % 100) * (OVERRIDE_PAUSE_MIN_NSEC / 100)};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void do_lock(int dirfd, const char *name, const char *host, int attempts)
{
    char lockname[NAME_MAX + 1], tmpname[NAME_MAX + 1], content[LOCK_CONTENT_MAX];
    struct lock_state ls;
    int attempt, n, state;

    if ((size_t) snprintf(lockname, sizeof(lockname), "%s.lock", name) >= sizeof(lockname)
        || (size_t) snprintf(tmpname, sizeof(tmpname), ".%s.lock.%.64s.%ld", name, host,
                             (long) getpid()) >= sizeof(tmpname))
        ms_refuse(EX_USAGE, "spool-name: %s is too long for a lock name", name);
    n = snprintf(content, sizeof(content), "%ld:%.64s\n", (long) getppid(), host);
    memset(&ls, 0, sizeof(ls));
    for (attempt = 0; attempt < attempts; attempt++) {
        if (attempt > 0)
            (void) sleep(LOCK_DELAY_SECONDS);
        state = check_lock(dirfd, name, lockname, host, time(NULL), &ls);
        if (state == LOCK_HELD)
            continue;
        if (state == LOCK_OVERRIDDEN)
            pause_after_override();
        if (try_create_lock(dirfd, lockname, tmpname, content, (size_t) n))
            return;
    }
    ms_refuse(EX_TEMPFAIL, "lock-timeout: %s/%s is locked by another process%s",
              MAILSLOT_SPOOL_DIR, lockname, attempts == 1 ? " (tried once)" : "");
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

    (void) ms_hygiene_start("mailslot-dotlock", 0);
    uid = getuid();
    caller_uid = uid;
    caller_gid = getgid();
    mail_gid = getegid();
    /* The effective uid is the caller's own; make all three uids the real one. */
    if (setresuid(uid, uid, uid) != 0)
        ms_refuse(EX_TEMPFAIL, "privilege: cannot set the uids to the real uid");
    /* Keep the mail group as the saved gid only, raised around spool operations. */
    lower_mail_group();
    if (argc != 3 || argv[1] == NULL || argv[2] == NULL)
        ms_refuse(EX_USAGE,
                  "usage: mailslot-dotlock lock|trylock|unlock|touch|create <spool-file>");
    cmd = argv[1];
    if (strcmp(cmd, "lock") != 0 && strcmp(cmd, "trylock") != 0 && strcmp(cmd, "unlock") != 0
        && strcmp(cmd, "touch") != 0 && strcmp(cmd, "create") != 0)
        ms_refuse(EX_USAGE, "usage: unknown command (lock, trylock, unlock, touch or create)");

    errno = 0;
    pw = getpwuid(uid);
    if (pw == NULL)
        ms_refuse(EX_NOUSER, "unknown-user: uid %lu has no login", (unsigned long) uid);
    if (uid == 0)
        ms_refuse(EX_NOPERM, "caller-root: root needs no helper");
    if (!login_is_safe(pw->pw_name))
        ms_refuse(EX_NOPERM, "spool-name: login of uid %lu is not a safe file name (or "
                  "ends in \".lock\", another login's lock name)", (unsigned long) uid);
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
        do_lock(dirfd, login, host, LOCK_ATTEMPTS);
    else if (strcmp(cmd, "trylock") == 0)
        do_lock(dirfd, login, host, 1);
    else if (strcmp(cmd, "unlock") == 0)
        do_unlock(dirfd, login, uid, host);
    else
        do_touch(dirfd, login, uid, host);
    return EX_OK;
}
