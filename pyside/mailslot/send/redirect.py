"""Sieve redirect: the forwarded copy, and when not to forward.

redirect_chunks(source, redirected_from) streams the message as Pigeonhole
forwards it: an X-Sieve line and X-Sieve-Redirected-From: <the user's address>
first, then the original header block without its Return-Path fields (the MTA
writes a new one for the new envelope), then the body, in the chunks of the
delivery's spooled message (memory does not grow with the message: at most
HEADER_SCAN_LIMIT plus a chunk is held).

loop_reason(original, target, own) says why a redirect must not go out: the
message already carries "Delivered-To: <target>" (the target had it: a forward
loop between two users or servers), or an X-Sieve-Redirected-From naming our own
address (we forwarded it before and it came back). envelope_sender(setting, ...)
applies sieve_redirect_envelope_from (sender, recipient, orig_recipient,
user_email, postmaster or <address>).

Errors: none here; SendError comes from the transport.
"""

from . import headers as H

# Postfix's header_size_limit: past it no header is looked at, the rest is body.
HEADER_SCAN_LIMIT = 102400
CHUNK = 256 * 1024


def redirect_chunks(source, redirected_from):
    """Yield the forwarded message's bytes from source: a message with chunks()
    (the engine's spooled message) or a seekable binary file."""
    if hasattr(source, "chunks"):
        pieces = iter(source.chunks())
    else:
        source.seek(0)
        pieces = iter(lambda: source.read(CHUNK), b"")
    yield H.x_sieve() + H.field("X-Sieve-Redirected-From", redirected_from)
    head = b""
    for piece in pieces:
        head += bytes(piece)
        end = 0 if head.startswith(b"\n") else head.find(b"\n\n")
        if end >= 0:
            yield _without_return_path(head[:end + 1])
            yield head[end + 1:]
            break
        if len(head) > HEADER_SCAN_LIMIT:
            # No header end within the limit: forward it as it came.
            yield head
            break
    else:
        yield head            # no body at all
        return
    for piece in pieces:
        yield piece


def _without_return_path(block):
    out = []
    dropping = False
    for line in block.split(b"\n")[:-1]:
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                out.append(line)
            continue
        dropping = line[:12].lower() == b"return-path:"
        if not dropping:
            out.append(line)
    return b"\n".join(out) + b"\n" if out else b""


def _addresses(values):
    from email.utils import getaddresses
    return {a.lower() for _, a in getaddresses(values) if a}


def loop_reason(original, target, own):
    """None, or why forwarding to target would be a loop.

    own is our address, or several (Pigeonhole compares X-Sieve-Redirected-From
    with both the final recipient and sieve_user_email).
    """
    if target.lower() in _addresses(original.values("delivered-to")):
        return "message already carries Delivered-To: <%s>" % target
    seen = _addresses(original.values("x-sieve-redirected-from"))
    for address in ([own] if isinstance(own, str) else list(own or ())):
        if address and address.lower() in seen:
            return "message was already redirected by <%s>" % address
    return None


def envelope_sender(setting, *, sender, recipient, orig_recipient, user_email,
                    postmaster):
    """sieve_redirect_envelope_from -> the forwarded copy's envelope sender.
    postmaster: the postmaster's address, or a function giving it (asked only
    when the setting says "postmaster")."""
    if not sender or sender == "<>":
        # RFC 5228 4.2: a message with the null sender is redirected with the
        # null sender, whatever the setting (no bounce loops).
        return ""
    value = (setting or "sender").strip()
    low = value.lower()
    if low == "sender" or not value:
        return sender
    if low == "recipient":
        return recipient
    if low == "orig_recipient":
        return orig_recipient or recipient
    if low == "user_email":
        return user_email or recipient
    if low == "postmaster":
        return postmaster() if callable(postmaster) else postmaster
    if value.startswith("<") and value.endswith(">"):
        return value[1:-1]
    return sender
