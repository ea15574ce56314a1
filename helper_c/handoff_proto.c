/* handoff_proto.c -- encoder and decoder of the hand-off request (the frame is
 * described in handoff_proto.h). Pure functions: no I/O, no allocation; the
 * libFuzzer target fuzz/fuzz_handoff.c runs them.
 *
 * Security notes: every read is bounds-checked against the frame's length before
 * it happens (get16/get32/get64 fail at the end); counts are checked against their
 * limits before any loop runs; the decoded strings point into the caller's buffer
 * and are never NUL-terminated copies, so a NUL inside one is refused, not cut.
 */
#include "handoff_proto.h"

#include <string.h>

static const char *const ALLOWED_ENV[HP_MAX_ENV] = {
    "USER", "HOME", "LOGNAME", "PATH", "TZ", "LANG", "LC_ALL", "MAILSLOT_DEBUG",
};

int hp_env_allowed(const char *entry, size_t len)
{
    const char *eq = memchr(entry, '=', len);
    if (eq == NULL)
        return 0;
    size_t keylen = (size_t)(eq - entry);
    for (size_t i = 0; i < HP_MAX_ENV; i++)
        if (strlen(ALLOWED_ENV[i]) == keylen && memcmp(ALLOWED_ENV[i], entry, keylen) == 0)
            return 1;
    return 0;
}

static size_t key_length(const struct hp_bytes *b)
{
    const char *eq = memchr(b->data, '=', b->len);
    return eq ? (size_t)(eq - b->data) : b->len;
}

/* The rules both directions share: counts, sizes, no NUL, the allow-list. */
static int request_valid(const struct hp_request *req)
{
    if (req->umask > 0777 || req->argc < 1 || req->argc > HP_MAX_ARGS ||
        req->envc > HP_MAX_ENV)
        return 0;
    for (size_t i = 0; i < req->argc; i++)
        if (req->argv[i].len > HP_MAX_ARG ||
            (req->argv[i].len && memchr(req->argv[i].data, 0, req->argv[i].len)))
            return 0;
    for (size_t i = 0; i < req->envc; i++) {
        const struct hp_bytes *e = &req->env[i];
        if (e->len == 0 || e->len > HP_MAX_ENV_ENTRY || memchr(e->data, 0, e->len) ||
            !hp_env_allowed(e->data, e->len))
            return 0;
        for (size_t j = 0; j < i; j++)
            if (key_length(&req->env[j]) == key_length(e) &&
                memcmp(req->env[j].data, e->data, key_length(e)) == 0)
                return 0;
    }
    for (size_t r = 0; r < HP_NLIMITS; r++)
        if (req->limits[r].soft > req->limits[r].hard)
            return 0;
    return 1;
}

struct writer {
    unsigned char *buf;
    size_t cap, pos;
    int ok;
};

static void put(struct writer *w, const void *data, size_t len)
{
    if (!w->ok || len > w->cap - w->pos) {
        w->ok = 0;
        return;
    }
    if (len)
        memcpy(w->buf + w->pos, data, len);
    w->pos += len;
}

static void put_uint(struct writer *w, uint64_t v, size_t width)
{
    unsigned char b[8];
    for (size_t i = 0; i < width; i++)
        b[i] = (unsigned char)(v >> (8 * (width - 1 - i)));
    put(w, b, width);
}

size_t hp_encode_request(const struct hp_request *req, unsigned char *buf, size_t cap)
{
    if (!request_valid(req) || cap < HP_HEADER)
        return 0;
    struct writer w = {buf, cap, 0, 1};
    put(&w, HP_MAGIC, 4);
    put_uint(&w, 0, 4);                 /* the body length, filled in below */
    put_uint(&w, req->umask, 4);
    put_uint(&w, req->argc, 2);
    for (size_t i = 0; i < req->argc; i++) {
        put_uint(&w, req->argv[i].len, 2);
        put(&w, req->argv[i].data, req->argv[i].len);
    }
    put_uint(&w, req->envc, 2);
    for (size_t i = 0; i < req->envc; i++) {
        put_uint(&w, req->env[i].len, 2);
        put(&w, req->env[i].data, req->env[i].len);
    }
    put_uint(&w, HP_NLIMITS, 2);
    for (size_t r = 0; r < HP_NLIMITS; r++) {
        put_uint(&w, r, 1);
        put_uint(&w, req->limits[r].soft, 8);
        put_uint(&w, req->limits[r].hard, 8);
    }
    if (!w.ok || w.pos - HP_HEADER > HP_MAX_BODY)
        return 0;
    size_t body = w.pos - HP_HEADER;
    for (size_t i = 0; i < 4; i++)
        buf[4 + i] = (unsigned char)(body >> (8 * (3 - i)));
    return w.pos;
}

struct reader {
    const unsigned char *buf;
    size_t len, pos;
    int ok;
};

static uint64_t get_uint(struct reader *r, size_t width)
{
    uint64_t v = 0;
    if (!r->ok || width > r->len - r->pos) {
        r->ok = 0;
        return 0;
    }
    for (size_t i = 0; i < width; i++)
        v = (v << 8) | r->buf[r->pos + i];
    r->pos += width;
    return v;
}

static void get_bytes(struct reader *r, struct hp_bytes *out, size_t max)
{
    size_t len = (size_t)get_uint(r, 2);
    if (!r->ok || len > max || len > r->len - r->pos) {
        r->ok = 0;
        return;
    }
    out->data = (const char *)r->buf + r->pos;
    out->len = len;
    r->pos += len;
}

int hp_decode_request(const unsigned char *buf, size_t len, struct hp_request *req)
{
    if (len < HP_HEADER || memcmp(buf, HP_MAGIC, 4) != 0)
        return -1;
    struct reader r = {buf, len, 4, 1};
    uint64_t body = get_uint(&r, 4);
    if (body > HP_MAX_BODY || body != len - HP_HEADER)
        return -1;
    req->umask = (uint32_t)get_uint(&r, 4);
    req->argc = (size_t)get_uint(&r, 2);
    if (!r.ok || req->argc < 1 || req->argc > HP_MAX_ARGS)
        return -1;
    for (size_t i = 0; i < req->argc && r.ok; i++)
        get_bytes(&r, &req->argv[i], HP_MAX_ARG);
    req->envc = (size_t)get_uint(&r, 2);
    if (!r.ok || req->envc > HP_MAX_ENV)
        return -1;
    for (size_t i = 0; i < req->envc && r.ok; i++)
        get_bytes(&r, &req->env[i], HP_MAX_ENV_ENTRY);
    if (get_uint(&r, 2) != HP_NLIMITS)
        return -1;
    for (size_t i = 0; i < HP_NLIMITS && r.ok; i++) {
        if (get_uint(&r, 1) != i)
            return -1;
        req->limits[i].soft = get_uint(&r, 8);
        req->limits[i].hard = get_uint(&r, 8);
    }
    if (!r.ok || r.pos != len || !request_valid(req))
        return -1;
    return 0;
}
