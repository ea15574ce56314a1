"""What a delivery would send, for `mailslot sieve-test -e`: shown, never sent.

preview(actions, data, envelope, settings) carries out a Sieve result's sending
actions (reject, redirect, vacation, notify) with the delivery's own rules and
builders (send/outgoing.py) into a CaptureTransport, without the duplicate
database, and returns the lines to print: each message whole after
"sending message from <sender> to <rcpt>:", as Pigeonhole's sieve-test -e shows
it, and the log lines a delivery would write.

Errors: none; a message that could not be built is a line saying so.
"""

import io


class _Lines:
    def __init__(self):
        self.lines = []

    def info(self, text):
        if text.startswith("sieve: "):
            text = text[len("sieve: "):]
        self.lines.append("info: " + text + " (not sent by sieve-test).")

    warning = error = info


def preview(actions, data, envelope, settings, *, hostname="localhost", now=None):
    """actions: result dicts (SieveResult.actions); envelope: {"from", "to",
    "orig_to"} strings; settings: a mapping with the delivery's setting names."""
    import time
    from .compose import Original
    from .outgoing import OutgoingMail
    from .transport import CaptureTransport
    from ..sieve.mail import RawMessage
    log = _Lines()
    capture = CaptureTransport()
    final = envelope.get("to") or ""
    out = OutgoingMail(settings, log=log, transport=capture, duplicates=None,
                       clock=(lambda: now) if now is not None else time.time,
                       hostname=hostname, envelope=envelope,
                       user_address=final if "@" in final else f"{final}@{hostname}",
                       dry_run=True)
    original = Original.from_message(RawMessage(data))
    shown = 0
    lines = []
    for action in actions:
        kind = action.get("type")
        try:
            if kind == "redirect":
                loop = out.redirect_loop(original, action["address"])
                if loop:
                    log.info(f"not forwarding to <{action['address']}>: loop ({loop})")
                else:
                    out.redirect(original, io.BytesIO(data), action["address"])
            elif kind == "vacation":
                out.vacation(original, action)
            elif kind == "notify":
                out.notify(original, action)
            elif kind == "reject":
                out.reject(original, action.get("reason") or "")
        except Exception as exc:   # shown, never raised: this is a preview
            log.info(f"{kind} action: {exc}")
        for sender, rcpts, message in capture.sent[shown:]:
            lines.append("sending message from <%s> to %s:" % (
                sender, ", ".join("<%s>" % r for r in rcpts)))
            lines.append(message.decode("utf-8", "replace").rstrip("\n"))
            lines.append("")
        shown = len(capture.sent)
        lines.extend(log.lines)
        log.lines = []
    return lines
