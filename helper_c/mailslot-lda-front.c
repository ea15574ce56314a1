/*
 * mailslot-lda-front -- mailslot-lda's fast path: hand the delivery to a resident
 * engine of the same uid (mailslot-handoffd), or run the engine as always.
 *
 * Usage: exactly mailslot-lda's (the arguments are not interpreted here, only
 * passed on). Unprivileged: installed 0755 root:root, no set-id bit.
 *
 * What it does:
 *   1. Decides whether a hand-off may be tried at all: the real and effective ids
 *      are equal and not root (the engine refuses root; the relay path is never
 *      handed off), no MAILSLOT_RELAY_* variable, no -k (the worker gets only the
 *      allowed environment, so "keep the environment" means the ordinary path), a
 *      command line that fits one frame (handoff_proto.h), fds 0-2 open.
 *   2. Connects to HANDOFF_DIR/<uid>/socket (fixed at build time; the directory is
 *      made by the unit, owned by that uid, 0700) and checks the server with
 *      SO_PEERCRED: its uid and gid must be ours.
 *   3. Sends one request: argv, the allowed environment (USER HOME LOGNAME PATH TZ
 *      LANG LC_ALL MAILSLOT_DEBUG, the engine's own list), every resource limit,
 *      the umask, and by SCM_RIGHTS fds 0, 1, 2 and the working directory.
 *   4. Waits (HANDSHAKE_TIMEOUT_MS) for the worker's 'A' (everything applied,
 *      the descriptors untouched) and answers 'G'. Only from then on is the
 *      delivery the worker's; the front waits for 'X' and the exit code, and
 *      exits with it.
 *   Any failure before 'G' is sent -- no socket, refused, another uid, a timeout,
 *   an 'R', a short write, anything unexpected -- closes the connection and execs
 *   ENGINE_PATH (the installed mailslot-lda) with the same argv and environment:
 *   the fast path never turns a delivery into a failure. After 'G', a connection
 *   that ends without a result is EX_TEMPFAIL (75): the MTA retries; the worker
 *   files a message whole or not at all.
 *
 * Signals and timeouts: the front installs no handler. When the MTA kills it
 * (signal, timeout), the kernel closes its end of the connection and the server
 * stops the worker (SIGTERM on hang-up, see pyside/mailslot/handoff/worker.py).
 *
 * Security notes: nothing here is privileged; the worth of the checks is that
 * mail is never handed to a process of another uid (SO_PEERCRED, checked after
 * connect) and that the server cannot be made to act with more than the
 * caller has (it refuses any peer whose uid, gid or groups differ from its own,
 * and applies the caller's limits, refusing when it cannot). Every system call's
 * result is checked; the process state the engine inherits on fallback (fds,
 * signals, umask, environment, limits) is left exactly as the MTA set it: the
 * connection is close-on-exec and closed before the exec, the cwd descriptor
 * likewise.
 */
#define _GNU_SOURCE
#include "handoff_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef HANDOFF_DIR
#define HANDOFF_DIR "/run/mailslot-handoff"
#endif
#ifndef ENGINE_PATH
#define ENGINE_PATH "/usr/lib/mailslot/mailslot-lda"
#endif
#ifndef HANDSHAKE_TIMEOUT_MS
#define HANDSHAKE_TIMEOUT_MS 3000
#endif

#define EX_TEMPFAIL 75
#define PROGRAM "mailslot-lda"

extern char **environ;

static unsigned char frame[HP_HEADER + HP_MAX_BODY];

static void say(const char *text)
{
    /* One line for the MTA's log; a failing stderr changes nothing. */
    ssize_t n = write(STDERR_FILENO, text, strlen(text));
    (void)n;
}

/* Run the engine as if the MTA had started it: same argv, environment, fds. */
static void __attribute__((noreturn)) fall_back(char **argv, int sock)
{
    if (sock >= 0 && close(sock) != 0 && errno != EINTR)
        say(PROGRAM ": closing the hand-off connection failed\n");
    execv(ENGINE_PATH, argv);
    say(PROGRAM ": cannot run " ENGINE_PATH "\n");
    exit(EX_TEMPFAIL);
}

/* -k anywhere in an option cluster (or anything that might be one): the engine
 * keeps the whole environment, which the worker cannot have. Conservative on
 * purpose: a value that merely looks like it only costs the ordinary path. */
static int wants_whole_environment(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1] != '-' && strchr(argv[i], 'k') != NULL)
            return 1;
    return 0;
}

static int fill_request(struct hp_request *req, int argc, char **argv)
{
    if (argc < 1 || (size_t)argc > HP_MAX_ARGS)
        return -1;
    req->argc = (size_t)argc;
    for (int i = 0; i < argc; i++) {
        req->argv[i].data = argv[i];
        req->argv[i].len = strlen(argv[i]);
    }
    req->envc = 0;
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        size_t len = strlen(*e);
        if (strncmp(*e, "MAILSLOT_RELAY_", 15) == 0)
            return -1;                  /* the relay's path is never handed off */
        if (!hp_env_allowed(*e, len))
            continue;
        size_t key = (size_t)(strchr(*e, '=') - *e);
        for (size_t j = 0; j < req->envc; j++)      /* a duplicate: getenv's is first */
            if (strncmp(req->env[j].data, *e, key + 1) == 0)
                goto next;
        if (req->envc >= HP_MAX_ENV)
            return -1;
        req->env[req->envc].data = *e;
        req->env[req->envc].len = len;
        req->envc++;
next:;
    }
    for (int r = 0; r < HP_NLIMITS; r++) {
        struct rlimit lim;
        if (getrlimit(r, &lim) != 0)
            return -1;
        req->limits[r].soft = lim.rlim_cur == RLIM_INFINITY ? HP_INFINITY : lim.rlim_cur;
        req->limits[r].hard = lim.rlim_max == RLIM_INFINITY ? HP_INFINITY : lim.rlim_max;
    }
    /* umask() is the only way to read it: set and put back at once. */
    mode_t mask = umask(077);
    umask(mask);
    req->umask = (uint32_t)mask;
    return 0;
}

static int connect_server(void)
{
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    int n = snprintf(addr.sun_path, sizeof addr.sun_path, "%s/%lu/socket", HANDOFF_DIR,
                     (unsigned long)getuid());
    if (n < 0 || (size_t)n >= sizeof addr.sun_path)
        return -1;
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        return -1;
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(sock);
        return -1;
    }
    /* Why: only a server of our own uid and gid may receive our mail and fds. */
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred ||
        cred.uid != getuid() || cred.gid != getgid()) {
        close(sock);
        return -1;
    }
    return sock;
}

/* Send the frame, the four descriptors on its first byte. 0 or -1. */
static int send_request(int sock, const unsigned char *buf, size_t len, int cwd)
{
    int fds[HP_NFDS] = {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, cwd};
    union {
        char buf[CMSG_SPACE(sizeof fds)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {(void *)buf, len};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(cmsg), fds, sizeof fds);
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        sent += (size_t)n;
        iov.iov_base = (void *)(buf + sent);
        iov.iov_len = len - sent;
        msg.msg_control = NULL;         /* the descriptors went with the first byte */
        msg.msg_controllen = 0;
    }
    return 0;
}

/* Read one byte; timeout_ms < 0 waits as long as it takes. The byte, or -1. */
static int read_byte(int sock, int timeout_ms)
{
    for (;;) {
        if (timeout_ms >= 0) {
            struct pollfd p = {sock, POLLIN, 0};
            int r = poll(&p, 1, timeout_ms);
            if (r < 0 && errno == EINTR)
                continue;
            if (r != 1)
                return -1;
        }
        unsigned char c;
        ssize_t n = read(sock, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        return n == 1 ? c : -1;
    }
}

static int fds_open(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0)
            return 0;
    return 1;
}

int main(int argc, char **argv)
{
    static struct hp_request req;
    if (getuid() == 0 || getuid() != geteuid() || getgid() != getegid() ||
        wants_whole_environment(argc, argv) || !fds_open() ||
        fill_request(&req, argc, argv) != 0)
        fall_back(argv, -1);
    size_t len = hp_encode_request(&req, frame, sizeof frame);
    if (len == 0)
        fall_back(argv, -1);
    int sock = connect_server();
    if (sock < 0)
        fall_back(argv, -1);
    int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0)
        fall_back(argv, sock);
    int sent = send_request(sock, frame, len, cwd);
    if (close(cwd) != 0 || sent != 0)
        fall_back(argv, sock);
    if (read_byte(sock, HANDSHAKE_TIMEOUT_MS) != HP_READY)
        fall_back(argv, sock);
    /* Why a second step: the worker touches our descriptors only after this byte,
     * so up to here falling back can never deliver a message twice or in part. */
    unsigned char go = HP_GO;
    ssize_t n;
    do
        n = send(sock, &go, 1, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n != 1)
        fall_back(argv, sock);
    /* Committed: the delivery is the worker's from here on. */
    int tag = read_byte(sock, -1);
    int code = tag == HP_RESULT ? read_byte(sock, -1) : -1;
    if (code < 0) {
        say(PROGRAM ": the hand-off server ended before the delivery finished; "
            "the message was not acknowledged\n");
        return EX_TEMPFAIL;
    }
    return code;
}
