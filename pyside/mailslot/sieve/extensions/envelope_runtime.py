"""envelope's run-time half: the test the interpreter runs (see envelope.py).

Kept apart from the test's definition so that running a cached program does not
import the compiler. The envelope comes from the delivery (runner.Envelope).
"""

from ..interpreter import TESTS
from ..match import match
from .core_runtime import extract_part


def envelope_values(it, parts, addr_part):
    """The values an envelope test compares (a list shared with later tests of
    the same parts: not to be changed). Each (parts, address part) is worked out
    once per envelope, not once per rule; the cache is kept for the envelope's
    addresses as they are (the test suite's test_set changes them in place)."""
    ctx = it.ctx
    env = ctx.envelope
    state = (env, env.sender, env.recipient, env.orig_recipient, env.auth_user)
    cached = ctx.envelope_cache
    if cached is None or cached[0] != state:
        cached = ctx.envelope_cache = (state, {})
    key = (tuple(parts), addr_part)
    values = cached[1].get(key)
    if values is None:
        values = cached[1][key] = _envelope_values(it, env, parts, addr_part)
    return values


def _envelope_values(it, env, parts, addr_part):
    values = []
    for part in parts:
        low = part.lower()
        if low == "from":
            sender = env.sender
            if sender is None or sender.localpart is None:
                values.append("")
            else:
                value = extract_part(it, sender.localpart, sender.domain, addr_part)
                if value is not None:
                    values.append(value)
        elif low == "to":
            rcpt = env.orig_recipient or env.recipient
            if rcpt is not None and rcpt.localpart is not None:
                value = extract_part(it, rcpt.localpart, rcpt.domain, addr_part)
                if value is not None:
                    values.append(value)
        elif low == "auth":
            if env.auth_user:
                values.append(env.auth_user)
    return values


def test_envelope(it, op):
    p = op[2]
    values = envelope_values(it, it.expand_list(p["parts"]), p["part"])
    return match(it, p["spec"], values, it.expand_list(p["keys"]))


TESTS["envelope"] = test_envelope
