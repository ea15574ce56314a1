/* handoff_proto.h -- the hand-off protocol between mailslot-lda-front and
 * mailslot-handoffd (pyside/mailslot/handoff/protocol.py is the other side).
 *
 * One request, client to server, on a SOCK_STREAM Unix socket, with four
 * descriptors (stdin, stdout, stderr, the working directory as O_PATH) attached
 * by SCM_RIGHTS to its first byte. All integers are big-endian.
 *
 *   "MSH1"                      magic and version
 *   u32 body length             <= HP_MAX_BODY
 *   body:
 *     u32 umask                 <= 0777
 *     u16 argc, then argc x (u16 length, bytes)    argc 1..HP_MAX_ARGS,
 *                               each <= HP_MAX_ARG bytes, no NUL
 *     u16 envc, then envc x (u16 length, "KEY=VALUE")   envc <= HP_MAX_ENV,
 *                               each <= HP_MAX_ENV_ENTRY bytes, no NUL, KEY in
 *                               the allow-list (hp_env_allowed), no KEY twice
 *     u16 nlimits, then nlimits x (u8 resource, u64 soft, u64 hard)
 *                               exactly HP_NLIMITS, resources 0..HP_NLIMITS-1 in
 *                               order, soft <= hard; HP_INFINITY is unlimited
 *   nothing after the body
 *
 * Replies, server to client, one byte each: 'A' (ready: the worker has applied
 * everything and has not touched the descriptors), 'R' (refused: fall back), and
 * after the client's 'G' (go: from here on the client never falls back) the
 * result 'X' followed by one byte, the exit code.
 *
 * Security notes: the decoder trusts no length: every count and size is checked
 * against the buffer and against the limits above before it is used, so a frame
 * is either accepted whole or refused; nothing is allocated (the decoded request
 * points into the caller's buffer). The limits bound what a peer can make the
 * other side read.
 */
#ifndef MAILSLOT_HANDOFF_PROTO_H
#define MAILSLOT_HANDOFF_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define HP_MAGIC "MSH1"
#define HP_HEADER 8                 /* magic + body length */
#define HP_MAX_ARGS 256             /* argv entries, argv[0] included */
#define HP_MAX_ARG 8192             /* the engine refuses over 4096 (cli.py) */
#define HP_MAX_ENV 8                /* the allow-list's size */
#define HP_MAX_ENV_ENTRY 4096
#define HP_NLIMITS 16               /* RLIMIT_CPU .. RLIMIT_RTTIME on Linux */
#define HP_INFINITY UINT64_MAX
/* A whole body; a command line that does not fit takes the ordinary path. */
#define HP_MAX_BODY 65536
#define HP_NFDS 4                   /* stdin, stdout, stderr, cwd */

#define HP_READY 'A'
#define HP_REFUSED 'R'
#define HP_GO 'G'
#define HP_RESULT 'X'

struct hp_bytes {
    const char *data;
    size_t len;
};

struct hp_limit {
    uint64_t soft, hard;
};

struct hp_request {
    uint32_t umask;
    size_t argc;
    struct hp_bytes argv[HP_MAX_ARGS];
    size_t envc;
    struct hp_bytes env[HP_MAX_ENV];
    struct hp_limit limits[HP_NLIMITS];
};

/* 1 if "KEY=..." (len bytes) names a variable the engine keeps: USER HOME LOGNAME
 * PATH TZ LANG LC_ALL MAILSLOT_DEBUG. */
int hp_env_allowed(const char *entry, size_t len);

/* Encode req into buf (cap bytes). Returns the frame's length, or 0 when req
 * breaks a rule above or the frame does not fit. */
size_t hp_encode_request(const struct hp_request *req, unsigned char *buf, size_t cap);

/* Decode one whole frame (exactly len bytes) into req. Returns 0, or -1 when the
 * frame breaks any rule above (then req is unspecified). */
int hp_decode_request(const unsigned char *buf, size_t len, struct hp_request *req);

#endif
