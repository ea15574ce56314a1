"""envelope's run-time half: the test the interpreter runs (see envelope.py).

Kept apart from the test's definition so that running a cached program does not
import the compiler. The envelope comes from the delivery (runner.Envelope).
"""

from ..interpreter import TESTS
from ..match import match
from .core_runtime import extract_part


def envelope_values(it, parts, addr_part):
    env = it.ctx.envelope
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
