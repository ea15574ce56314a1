/*
 * hygiene.c -- process hygiene and refusals shared by mailslot-relay and
 * mailslot-dotlock (see hygiene.h).
 *
 * Security notes: this runs first in a setuid-root and a setgid-mail program whose
 * caller chose the fds, signal dispositions, signal mask, umask, resource limits and
 * environment. Everything here either resets that state or fails closed: a failure to
 * reset is a refusal (EX_TEMPFAIL), never a warning.
 */
#define _GNU_SOURCE
#include "hygiene.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <syslog.h>
#include <unistd.h>

extern char **environ;

static const char *program = "mailslot";
static char *empty_environ[1] = {NULL};

void ms_refuse(int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    (void) vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    (void) fprintf(stderr, "%s: %s\n", program, msg);
    (void) fflush(stderr);
    openlog(program, LOG_PID | LOG_NDELAY, LOG_MAIL);
    syslog(code == EX_TEMPFAIL ? LOG_ERR : LOG_WARNING, "%s", msg);
    closelog();
    exit(code);
}

/* fds 0, 1 and 2 must be open, or a later open() would become our stdout. */
static void open_std_fds(void)
{
    int fd;

    for (fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0)
            continue;
        if (errno != EBADF || open("/dev/null", O_RDWR | O_NOCTTY) != fd)
            ms_refuse(EX_TEMPFAIL, "fd-setup: cannot open /dev/null as fd %d", fd);
    }
}

/* No fd the caller left open may reach the program we exec, nor be written by us. */
static void close_other_fds(void)
{
    long max, fd;

    if (close_range(3, ~0U, 0) == 0)
        return;
    max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 1048576)
        max = 1048576;
    for (fd = 3; fd < max; fd++)
        (void) close((int) fd);
}

/* Caller-installed SIG_IGN survives exec; a blocked mask would too. Default every
 * disposition, then block every signal until exec: the caller shares our real uid
 * and may signal us, but no handler can run half-way through the privilege drop. */
static void reset_signals(void)
{
    struct sigaction sa;
    sigset_t all;
    int sig;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    (void) sigemptyset(&sa.sa_mask);
    (void) sigfillset(&all);
    if (sigprocmask(SIG_SETMASK, &all, NULL) != 0)
        ms_refuse(EX_TEMPFAIL, "signals: cannot block signals");
    for (sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        /* EINVAL: a number glibc reserves for itself (32, 33); nothing to reset. */
        if (sigaction(sig, &sa, NULL) != 0 && errno != EINVAL)
            ms_refuse(EX_TEMPFAIL, "signals: cannot reset signal %d", sig);
    }
}

void ms_unblock_signals(void)
{
    sigset_t none;

    (void) sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        ms_refuse(EX_TEMPFAIL, "signals: cannot unblock signals");
}

char **ms_hygiene_start(const char *progname)
{
    char **caller_env = environ;
    struct rlimit no_core = {0, 0};

    program = progname;
    /* Nothing we create may be readable by anyone else. */
    umask(077);
    /* The caller's environment is data, not configuration: libc (syslog, NSS, time
     * zones) must never see it. The relay copies allowed values out of caller_env. */
    environ = empty_environ;
    reset_signals();
    open_std_fds();
    close_other_fds();
    /* A core of a setuid process could hold the policy or another user's data. */
    if (setrlimit(RLIMIT_CORE, &no_core) != 0)
        ms_refuse(EX_TEMPFAIL, "rlimit: cannot set RLIMIT_CORE to 0");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        ms_refuse(EX_TEMPFAIL, "dumpable: cannot mark the process non-dumpable");
    return caller_env;
}

static int dir_is_trusted(const struct stat *st)
{
    if (!S_ISDIR(st->st_mode) || st->st_uid != 0)
        return 0;
    /* A sticky directory (/tmp) lets only an entry's owner rename or remove it. */
    return (st->st_mode & (S_IWGRP | S_IWOTH)) == 0 || (st->st_mode & S_ISVTX) != 0;
}

int ms_open_trusted(const char *path, int path_only, struct stat *st, const char **why)
{
    char comp[NAME_MAX + 1];
    const char *p = path, *slash;
    int dirfd, fd;
    size_t n;

    if (path == NULL || path[0] != '/') {
        *why = "not an absolute path";
        return -1;
    }
    dirfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0 || fstat(dirfd, st) != 0 || !dir_is_trusted(st)) {
        *why = "/ is not root-owned";
        goto fail;
    }
    for (;;) {
        while (*p == '/')
            p++;
        slash = strchr(p, '/');
        n = slash ? (size_t) (slash - p) : strlen(p);
        if (n == 0 || n > NAME_MAX) {
            *why = "bad path component";
            goto fail;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        if (slash == NULL)
            break;
        /* Walk with O_NOFOLLOW, checking each directory we pass through. */
        fd = openat(dirfd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        (void) close(dirfd);
        dirfd = fd;
        if (dirfd < 0) {
            *why = errno == ELOOP || errno == ENOTDIR ? "a directory on the path is a symlink"
                                                      : "cannot open a directory on the path";
            goto fail;
        }
        if (fstat(dirfd, st) != 0 || !dir_is_trusted(st)) {
            *why = "a directory on the path is writable by others or not root-owned";
            goto fail;
        }
        p = slash;
    }
    fd = openat(dirfd, comp,
                (path_only ? O_PATH : O_RDONLY | O_NONBLOCK | O_NOCTTY) | O_NOFOLLOW | O_CLOEXEC);
    (void) close(dirfd);
    dirfd = -1;
    if (fd < 0) {
        *why = errno == ELOOP ? "is a symlink" : errno == ENOENT ? "does not exist"
                                                                 : "cannot be opened";
        return -1;
    }
    /* Judge the file we opened, not the name: a swap after this changes nothing. */
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        *why = "is not a regular file";
        (void) close(fd);
        return -1;
    }
    if (st->st_uid != 0) {
        *why = "is not owned by root";
        (void) close(fd);
        return -1;
    }
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        *why = "is writable by group or others";
        (void) close(fd);
        return -1;
    }
    return fd;
fail:
    if (dirfd >= 0)
        (void) close(dirfd);
    return -1;
}

long ms_read_all(int fd, char *buf, size_t cap)
{
    size_t used = 0;

    for (;;) {
        ssize_t r;
        if (used == cap) {
            char probe;
            /* Full: one more byte means the file is larger than we accept. */
            do
                r = read(fd, &probe, 1);
            while (r < 0 && errno == EINTR);
            return r == 0 ? (long) used : -1;
        }
        r = read(fd, buf + used, cap - used);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return (long) used;
        used += (size_t) r;
    }
}
