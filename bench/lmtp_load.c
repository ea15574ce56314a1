/*
 * lmtp_load: the LMTP benchmark's load generator (bench/lmtp_bench.py).
 *
 *     lmtp_load SOCKET CONNECTIONS SECONDS MESSAGE RCPT [RCPT...]
 *
 * Opens CONNECTIONS unix-socket LMTP connections to SOCKET, reads each greeting
 * (220) and sends LHLO once (a multi-line 250). When every connection is ready the
 * clock starts; each connection then delivers MESSAGE (a file, LF or CRLF line ends)
 * to RCPT[i % count], one transaction after another, the way Postfix's LMTP client
 * drives a server that offers PIPELINING: MAIL FROM, RCPT TO and DATA in one write,
 * the three replies awaited and checked (250, 250, 354), then the dot-stuffed content
 * and the final "." in one write, then the one reply (RFC 2033: one per recipient)
 * which must be 250. A connection starts no new transaction once SECONDS have passed;
 * it finishes the one in flight, sends QUIT and reads the 221.
 *
 * One thread, non-blocking sockets and epoll: the generator should cost the machine
 * as little CPU as possible, since on a small machine it shares the cores with the
 * server it measures. It prints one line on stdout:
 *
 *     messages=N elapsed=SECONDS errors=0 user=SECONDS sys=SECONDS
 *
 * messages counts the 250s after the content; elapsed runs from the start of the
 * clock to the last connection's last final reply; user and sys are this process's
 * CPU (getrusage). Errors: any unexpected reply, a connection closed by the server,
 * a reply longer than REPLY_MAX or none within STALL_SECONDS makes it print the
 * connection, what it sent and what it got on stderr and exit 1 (after the same
 * stdout line, errors=1): a run with a failed transaction is no measurement.
 * Usage errors exit 64.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets; a multi-line LHLO reply
 * has a line per extension, so a whole reply is allowed a few KiB. */
#define REPLY_MAX 8192
#define MAX_CONNECTIONS 1024
/* A server that answers nothing for this long has hung: fail, do not wait for ever. */
#define STALL_SECONDS 60
#define SENDER "sender@bench.test"

enum phase { GREETING, LHLO, ENVELOPE, CONTENT, QUIT, DONE };

struct conn {
    int fd, index;
    enum phase phase;
    int pending;          /* replies still awaited in this phase */
    const char *rcpt;
    char *out;            /* bytes still to write (points into a shared buffer) */
    size_t outlen;
    char in[REPLY_MAX];
    size_t inlen;
    long delivered;
};

static char *content;     /* the message, CRLF, dot-stuffed, "." line appended */
static size_t content_len;
static double stop_at;
static int epfd;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fail(struct conn *c, const char *fmt, ...)
{
    va_list ap;
    struct rusage ru;
    fprintf(stderr, "lmtp_load: connection %d: ", c ? c->index : -1);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    getrusage(RUSAGE_SELF, &ru);
    printf("messages=0 elapsed=0 errors=1 user=%.6f sys=%.6f\n",
           ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "lmtp_load: out of memory\n");
        exit(1);
    }
    return p;
}

/* The file's lines with CRLF ends; a line starting with "." gets another (RFC 5321
 * 4.5.2); then the terminating ".". */
static void load_content(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, "lmtp_load: %s: %s\n", path, strerror(errno));
        exit(66);
    }
    char *raw = xmalloc(st.st_size + 1);
    size_t n = fread(raw, 1, st.st_size, f);
    fclose(f);
    /* At most two extra bytes per input byte ("\n" -> "\r\n", "." -> ".."), plus the end. */
    content = xmalloc(2 * n + 8);
    size_t o = 0;
    int bol = 1;
    for (size_t i = 0; i < n; i++) {
        char ch = raw[i];
        if (bol && ch == '.')
            content[o++] = '.';
        if (ch == '\n' && (i == 0 || raw[i - 1] != '\r'))
            content[o++] = '\r';
        content[o++] = ch;
        bol = ch == '\n';
    }
    if (!bol) {
        content[o++] = '\r';
        content[o++] = '\n';
    }
    memcpy(content + o, ".\r\n", 3);
    content_len = o + 3;
    free(raw);
}

static void want(struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        fail(c, "epoll_ctl: %s", strerror(errno));
}

/* Write what is pending; what the socket does not take now waits for EPOLLOUT. */
static void flush(struct conn *c)
{
    while (c->outlen) {
        ssize_t n = write(c->fd, c->out, c->outlen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                want(c, EPOLLIN | EPOLLOUT);
                return;
            }
            fail(c, "write: %s", strerror(errno));
        }
        c->out += n;
        c->outlen -= n;
    }
}

static void send_buf(struct conn *c, char *buf, size_t len)
{
    c->out = buf;
    c->outlen = len;
    flush(c);
}

static void start_transaction(struct conn *c)
{
    static char envelope[MAX_CONNECTIONS][600];
    int n = snprintf(envelope[c->index], sizeof envelope[0],
                     "MAIL FROM:<" SENDER ">\r\nRCPT TO:<%s>\r\nDATA\r\n", c->rcpt);
    c->phase = ENVELOPE;
    c->pending = 3;
    send_buf(c, envelope[c->index], n);
}

/* One complete reply (its last line starts "ddd "), as the phase expects it. */
static int on_reply(struct conn *c, const char *line, int *finished)
{
    static char lhlo[] = "LHLO bench.client\r\n", quit[] = "QUIT\r\n";
    const char *expect;
    switch (c->phase) {
    case GREETING: expect = "220"; break;
    case LHLO: expect = "250"; break;
    case ENVELOPE: expect = c->pending == 1 ? "354" : "250"; break;
    case CONTENT: expect = "250"; break;
    case QUIT: expect = "221"; break;
    default: expect = "";
    }
    if (strncmp(line, expect, 3) != 0)
        fail(c, "expected %s in phase %d, got \"%s\"", expect, c->phase, line);
    if (--c->pending > 0)
        return 0;
    switch (c->phase) {
    case GREETING:
        c->phase = LHLO;
        c->pending = 1;
        send_buf(c, lhlo, sizeof lhlo - 1);
        break;
    case LHLO:
        c->phase = DONE;        /* ready: waits for the clock */
        *finished = 1;
        break;
    case ENVELOPE:
        c->phase = CONTENT;
        c->pending = 1;
        send_buf(c, content, content_len);
        break;
    case CONTENT:
        c->delivered++;
        if (now() < stop_at) {
            start_transaction(c);
        } else {
            c->phase = QUIT;
            c->pending = 1;
            *finished = 1;      /* its last transaction is done */
            send_buf(c, quit, sizeof quit - 1);
        }
        break;
    case QUIT:
        c->phase = DONE;
        close(c->fd);
        c->fd = -1;
        break;
    default:
        break;
    }
    return 0;
}

/* Read what the server sent (one read a wake-up: epoll is level-triggered, so what
 * is left wakes it again, and a read that would only say EAGAIN costs a system call);
 * hand each complete reply to on_reply. Returns how many connections reached the end
 * of their phase (0 or 1). */
static int on_readable(struct conn *c)
{
    int finished = 0;
    if (c->inlen == sizeof c->in)
        fail(c, "reply longer than %d bytes", REPLY_MAX);
    ssize_t n = read(c->fd, c->in + c->inlen, sizeof c->in - c->inlen);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN)
            return 0;
        fail(c, "read: %s", strerror(errno));
    }
    if (n == 0)
        fail(c, "server closed the connection (phase %d)", c->phase);
    c->inlen += n;
    /* Whole lines: a "ddd-" line continues the reply, a "ddd " line ends it. */
    size_t start = 0;
    for (;;) {
        char *nl = memmem(c->in + start, c->inlen - start, "\r\n", 2);
        if (!nl)
            break;
        size_t len = nl - (c->in + start);
        *nl = '\0';
        const char *line = c->in + start;
        start += len + 2;
        if (len < 3 || (len > 3 && line[3] != ' ' && line[3] != '-'))
            fail(c, "malformed reply line \"%s\"", line);
        if (len > 3 && line[3] == '-')
            continue;
        if (c->pending <= 0)
            fail(c, "unsolicited reply \"%s\"", line);
        on_reply(c, line, &finished);
        if (c->fd < 0)
            return finished;
    }
    memmove(c->in, c->in + start, c->inlen - start);
    c->inlen -= start;
    return finished;
}

/* Run the event loop until `remaining` connections have finished their phase. */
static void run_until(struct conn *conns, int count, int remaining, double deadline_from)
{
    struct epoll_event evs[64];
    double last = deadline_from;
    while (remaining > 0) {
        int n = epoll_wait(epfd, evs, 64, 1000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail(NULL, "epoll_wait: %s", strerror(errno));
        }
        if (n == 0) {
            if (now() - last > STALL_SECONDS)
                for (int i = 0; i < count; i++)
                    if (conns[i].pending > 0)
                        fail(&conns[i], "no reply for %d s (phase %d)",
                             STALL_SECONDS, conns[i].phase);
            continue;
        }
        last = now();
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT) {
                flush(c);
                if (!c->outlen)
                    want(c, EPOLLIN);
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                remaining -= on_readable(c);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: lmtp_load SOCKET CONNECTIONS SECONDS MESSAGE RCPT...\n");
        return 64;
    }
    const char *path = argv[1];
    int count = atoi(argv[2]);
    double seconds = atof(argv[3]);
    char **rcpts = argv + 5;
    int nrcpt = argc - 5;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (count < 1 || count > MAX_CONNECTIONS || seconds <= 0
        || strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "lmtp_load: bad connections, seconds or socket path\n");
        return 64;
    }
    for (int i = 0; i < nrcpt; i++)
        if (strlen(rcpts[i]) > 500 || strpbrk(rcpts[i], "\r\n<>")) {
            fprintf(stderr, "lmtp_load: bad recipient \"%s\"\n", rcpts[i]);
            return 64;
        }
    load_content(argv[4]);
    strcpy(sa.sun_path, path);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        fail(NULL, "epoll_create1: %s", strerror(errno));
    struct conn *conns = calloc(count, sizeof *conns);
    if (!conns)
        fail(NULL, "out of memory");
    for (int i = 0; i < count; i++) {
        struct conn *c = &conns[i];
        c->index = i;
        c->rcpt = rcpts[i % nrcpt];
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
            fail(c, "connect %s: %s", path, strerror(errno));
        /* Non-blocking only after the connect: a full backlog makes connect wait
         * instead of failing with EAGAIN. */
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        c->phase = GREETING;
        c->pending = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
            fail(c, "epoll_ctl: %s", strerror(errno));
    }
    run_until(conns, count, count, now());            /* greetings and LHLO */
    double began = now();
    stop_at = began + seconds;
    for (int i = 0; i < count; i++)
        start_transaction(&conns[i]);
    run_until(conns, count, count, began);            /* the timed transactions */
    double elapsed = now() - began;
    int open = 0;
    for (int i = 0; i < count; i++)
        open += conns[i].fd >= 0;
    while (open > 0) {                          /* the 221s, outside the clock */
        struct epoll_event evs[64];
        int n = epoll_wait(epfd, evs, 64, STALL_SECONDS * 1000);
        if (n == 0)
            fail(NULL, "no reply to QUIT for %d s", STALL_SECONDS);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->fd >= 0) {
                on_readable(c);
                open -= c->fd < 0;
            }
        }
    }
    long messages = 0;
    for (int i = 0; i < count; i++)
        messages += conns[i].delivered;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("messages=%ld elapsed=%.6f errors=0 user=%.6f sys=%.6f\n", messages, elapsed,
           ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    return 0;
}
