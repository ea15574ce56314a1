"""The hand-off frame (helper_c/handoff_proto.h is its definition), decoded.

    request = decode_request(frame)   # -> Request, or ProtocolError

A frame is "MSH1", a 32-bit body length and the body: the umask, argv, the
allowed environment, every resource limit; integers big-endian. The rules and
limits here are the C encoder's, one for one: a frame either decodes whole or is
refused, and a refusal sends the client down its ordinary path.

Replies are single bytes: READY ('A'), REFUSED ('R'), and after the client's GO
('G') RESULT ('X') with the exit code.

Errors: ProtocolError for every broken rule (the worker answers REFUSED).

Security notes: every length is checked against the frame and the limits before
it is used; the frame itself is bounded (MAX_BODY) before it is read; names in
the environment must be on ALLOWED_ENVIRONMENT, which is the engine's own list
(cli.KEPT_ENVIRONMENT plus its debug switch), so the worker cannot be given a
variable the ordinary path would have dropped.
"""

import struct

MAGIC = b"MSH1"
HEADER = 8
MAX_ARGS = 256
MAX_ARG = 8192
MAX_ENV = 8
MAX_ENV_ENTRY = 4096
NLIMITS = 16            # RLIMIT_CPU .. RLIMIT_RTTIME on Linux (0..15)
MAX_BODY = 65536
INFINITY = 2**64 - 1
NFDS = 4                # stdin, stdout, stderr, the working directory (O_PATH)
ALLOWED_ENVIRONMENT = ("USER", "HOME", "LOGNAME", "PATH", "TZ", "LANG", "LC_ALL",
                       "MAILSLOT_DEBUG")

READY = b"A"
REFUSED = b"R"
GO = b"G"
RESULT = b"X"


class ProtocolError(Exception):
    """The frame breaks a rule of handoff_proto.h."""


class Request:
    """One decoded hand-off: argv (list of bytes), env (dict str -> str as bytes
    decoded with surrogateescape), limits (list of (soft, hard), INFINITY for none),
    umask."""

    def __init__(self, umask, argv, env, limits):
        self.umask = umask
        self.argv = argv
        self.env = env
        self.limits = limits


def body_length(header):
    """The body length a frame's 8-byte header announces (checked against MAX_BODY)."""
    if len(header) != HEADER or header[:4] != MAGIC:
        raise ProtocolError("not a hand-off frame")
    (length,) = struct.unpack(">I", header[4:])
    if length > MAX_BODY:
        raise ProtocolError(f"frame body of {length} bytes (limit {MAX_BODY})")
    return length


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if n > len(self.data) - self.pos:
            raise ProtocolError("frame ends early")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self, width):
        return int.from_bytes(self.take(width), "big")

    def string(self, limit):
        n = self.uint(2)
        if n > limit:
            raise ProtocolError(f"entry of {n} bytes (limit {limit})")
        data = self.take(n)
        if b"\0" in data:
            raise ProtocolError("NUL in an entry")
        return data


def decode_request(frame):
    """Decode one whole frame (bytes) into a Request; ProtocolError if it breaks a rule."""
    length = body_length(bytes(frame[:HEADER]))
    if length != len(frame) - HEADER:
        raise ProtocolError("frame length does not match its header")
    r = _Reader(bytes(frame))
    r.pos = HEADER
    umask = r.uint(4)
    if umask > 0o777:
        raise ProtocolError("umask out of range")
    argc = r.uint(2)
    if not 1 <= argc <= MAX_ARGS:
        raise ProtocolError(f"{argc} arguments (1 to {MAX_ARGS})")
    argv = [r.string(MAX_ARG) for _ in range(argc)]
    envc = r.uint(2)
    if envc > MAX_ENV:
        raise ProtocolError(f"{envc} environment entries (limit {MAX_ENV})")
    env = {}
    for _ in range(envc):
        entry = r.string(MAX_ENV_ENTRY)
        key, sep, value = entry.partition(b"=")
        name = key.decode("ascii", "replace")
        if not sep or name not in ALLOWED_ENVIRONMENT:
            raise ProtocolError(f"environment entry {name!r} is not allowed")
        if name in env:
            raise ProtocolError(f"environment entry {name!r} twice")
        env[name] = value.decode("utf-8", "surrogateescape")
    if r.uint(2) != NLIMITS:
        raise ProtocolError("wrong number of resource limits")
    limits = []
    for resource in range(NLIMITS):
        if r.uint(1) != resource:
            raise ProtocolError("resource limits out of order")
        soft, hard = r.uint(8), r.uint(8)
        if soft > hard:
            raise ProtocolError("a soft limit above its hard limit")
        limits.append((soft, hard))
    if r.pos != len(frame):
        raise ProtocolError("bytes after the frame's body")
    return Request(umask, argv, env, limits)


def encode_request(request):
    """The frame for a Request (the C front's encoding; for tests and tools)."""
    body = [struct.pack(">IH", request.umask, len(request.argv))]
    for arg in request.argv:
        body.append(struct.pack(">H", len(arg)) + arg)
    body.append(struct.pack(">H", len(request.env)))
    for key, value in request.env.items():
        entry = key.encode() + b"=" + value.encode("utf-8", "surrogateescape")
        body.append(struct.pack(">H", len(entry)) + entry)
    body.append(struct.pack(">H", NLIMITS))
    for resource, (soft, hard) in enumerate(request.limits):
        body.append(struct.pack(">BQQ", resource, soft, hard))
    data = b"".join(body)
    return MAGIC + struct.pack(">I", len(data)) + data
