/* fuzz_handoff.c -- libFuzzer target for the hand-off frame (handoff_proto.c).
 *
 * Any input: the decoder either refuses it or accepts it; an accepted frame must
 * re-encode to exactly the same bytes (the framing is canonical: nothing the
 * decoder let through can be read two ways), and every decoded string must lie
 * inside the input. The input is also read as a request to encode (its bytes
 * cut into arguments), which must decode back to the same request. A broken
 * promise abort()s.
 */
#include "handoff_proto.h"

#include <stdlib.h>
#include <string.h>

static unsigned char out[HP_HEADER + HP_MAX_BODY];

static void check_inside(const struct hp_bytes *b, const uint8_t *data, size_t size)
{
    if (b->len && ((const uint8_t *)b->data < data ||
                   (const uint8_t *)b->data + b->len > data + size))
        abort();
}

static void round_trip_decode(const uint8_t *data, size_t size)
{
    static struct hp_request req;
    if (hp_decode_request(data, size, &req) != 0)
        return;
    for (size_t i = 0; i < req.argc; i++)
        check_inside(&req.argv[i], data, size);
    for (size_t i = 0; i < req.envc; i++)
        check_inside(&req.env[i], data, size);
    size_t len = hp_encode_request(&req, out, sizeof out);
    if (len != size || memcmp(out, data, size) != 0)
        abort();
}

static void round_trip_encode(const uint8_t *data, size_t size)
{
    static struct hp_request req, back;
    memset(&req, 0, sizeof req);
    /* Arguments: the input cut at '\n'; limits and umask from its first bytes. */
    req.umask = size ? data[0] & 0777 : 022;
    const char *p = (const char *)data, *end = p + size;
    req.argc = 0;
    while (req.argc < HP_MAX_ARGS) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        req.argv[req.argc].data = p;
        req.argv[req.argc].len = (size_t)(stop - p);
        req.argc++;
        if (!nl)
            break;
        p = nl + 1;
    }
    for (size_t r = 0; r < HP_NLIMITS; r++) {
        req.limits[r].hard = r < size ? (uint64_t)data[r] << (r * 3) : HP_INFINITY;
        req.limits[r].soft = req.limits[r].hard / 2;
    }
    req.envc = 1;
    req.env[0].data = "PATH=/usr/bin:/bin";
    req.env[0].len = strlen(req.env[0].data);
    size_t len = hp_encode_request(&req, out, sizeof out);
    if (len == 0)
        return;                         /* a NUL or an over-long argument: refused */
    if (hp_decode_request(out, len, &back) != 0 || back.argc != req.argc ||
        back.envc != 1 || back.umask != req.umask ||
        memcmp(back.limits, req.limits, sizeof req.limits) != 0)
        abort();
    for (size_t i = 0; i < req.argc; i++)
        if (back.argv[i].len != req.argv[i].len ||
            memcmp(back.argv[i].data, req.argv[i].data, req.argv[i].len) != 0)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    round_trip_decode(data, size);
    round_trip_encode(data, size);
    return 0;
}
