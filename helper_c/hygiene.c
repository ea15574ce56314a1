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

/* fds 0, 1 and 2 as the caller left them. What a caller who closed them gets: in a
 * set-id program (AT_SECURE) glibc's start-up code, before main, opens a closed fd 0
 * as /dev/full WRITE-only and closed fds 1 and 2 as /dev/null READ-only
 * (csu/check_fds.c), so that a later open cannot become stdout; run without set-id
 * (the sanitizer builds, root) they stay closed. Either way none of them is usable:
 * fd 0 cannot be read (no message) and 1 and 2 cannot be written (the engine's
 * Python exits 120 when it cannot flush them). So: 1 and 2, if closed or not
 * writable, become /dev/null opened for writing (a closed stderr loses only the
 * refusal's stderr copy; syslog keeps it); fd 0, if closed or not readable, is a
 * refusal when the program reads it (75: the message is the MTA's, it retries). */
static int fd_usable(int fd, int want_read)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0)
        return 0;
    fl &= O_ACCMODE;
    return want_read ? fl == O_RDONLY || fl == O_RDWR : fl == O_WRONLY || fl == O_RDWR;
}

static void setup_std_fds(int need_stdin)
{
    int fd, stdin_ok = fd_usable(0, 1);

    /* First fill every hole (so the opens below cannot land on 0-2 by accident). */
    for (fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0)
            continue;
        if (errno != EBADF || open("/dev/null", O_RDONLY | O_NOCTTY) != fd)
            ms_refuse(EX_TEMPFAIL, "stdio: cannot open /dev/null as fd %d", fd);
    }
    for (fd = 1; fd <= 2; fd++) {
        int nfd;
        if (fd_usable(fd, 0))
            continue;
        nfd = open("/dev/null", O_WRONLY | O_NOCTTY | O_CLOEXEC);
        if (nfd < 0 || dup2(nfd, fd) != fd)
            ms_refuse(EX_TEMPFAIL, "stdio: cannot open /dev/null for writing as fd %d", fd);
        (void) close(nfd);
    }
    if (need_stdin && !stdin_ok)
        ms_refuse(EX_TEMPFAIL, "stdio: stdin (fd 0) is closed or not open for reading: "
                  "no message to deliver");
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

char **ms_hygiene_start(const char *progname, int need_stdin)
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
    setup_std_fds(need_stdin);
    close_other_fds();
    /* A core of a setuid process could hold the policy or another user's data. */
    if (setrlimit(RLIMIT_CORE, &no_core) != 0)
        ms_refuse(EX_TEMPFAIL, "rlimit: cannot set RLIMIT_CORE to 0");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        ms_refuse(EX_TEMPFAIL, "dumpable: cannot mark the process non-dumpable");
    return caller_env;
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
