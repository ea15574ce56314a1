"""A deliverer for the mbox tests: saves generated messages with mailslot's Storage.

    python3 -I deliverer.py '<json plan>'

Run as a child (often as another uid, through setpriv), so that it can be killed,
signalled and run eight at a time. The plan:
    {"pyside": path, "location": str, "home": str, "settings": {...} (optional),
     "helper": path (optional), "mailbox": [components] (default ["INBOX"]),
     "tag": str, "count": int, "size": int, "start": int (default 0)}
It saves count messages make_message(tag, i, size) and prints one JSON line per
save, flushed: {"id", "offset", "mbox_path", "size", "warnings"}; a StorageError
prints {"id", "error"} and the deliverer goes on.

make_message() builds messages that prove their own integrity: the body's SHA-256
is in a header, and the body holds lines an mbox writer must quote ("From ",
">From ", ">>From ") and lines it must not touch.
"""

import hashlib
import json
import os
import sys

QUOTE_BAIT = (b"From the start of a line\n", b">From quoted once\n", b">>From twice\n",
              b"From\n", b"Fromage\n", b" From indented\n", b"\n")


def make_message(tag, index, size):
    """A message of about size bytes: headers, then a body of varied lines."""
    ident = f"{tag}-{index}"
    body = bytearray()
    n = 0
    while len(body) < max(size - 200, 0):
        body += QUOTE_BAIT[n % len(QUOTE_BAIT)]
        body += f"line {n} of {ident}: the quick brown fox jumps\n".encode()
        n += 1
    body = bytes(body)
    digest = hashlib.sha256(body).hexdigest()
    head = (f"From: sender{index}@example.org\nTo: rcpt@example.org\n"
            f"Subject: {ident}\nMessage-ID: <{ident}@test>\nX-Body-SHA256: {digest}\n\n")
    return head.encode() + body


def main():
    plan = json.loads(sys.argv[1])
    sys.path.insert(0, plan["pyside"])
    sys.path.insert(0, os.path.dirname(plan["pyside"]))
    from mailslot.errors import StorageError
    from tests.message_source import BytesSource
    from mailslot.storage import open_storage
    storage = open_storage(plan["location"], user=plan.get("user", "test"),
                           home=plan["home"], hostname=os.uname().nodename,
                           mail_fsync=plan.get("mail_fsync", "optimized"),
                           settings=plan.get("settings"), dotlock_helper=plan.get("helper"))
    name = tuple(plan.get("mailbox", ["INBOX"]))
    start = plan.get("start", 0)
    for i in range(start, start + plan["count"]):
        ident = f"{plan['tag']}-{i}"
        source = BytesSource(make_message(plan["tag"], i, plan["size"]),
                             envelope_sender=f"sender{i}@example.org")
        try:
            result = storage.save(name, source)
        except StorageError as exc:
            print(json.dumps({"id": ident, "error": str(exc)}), flush=True)
            continue
        print(json.dumps({"id": ident, "offset": result.offset, "mbox_path": result.mbox_path,
                          "size": result.size, "warnings": list(result.warnings)}),
              flush=True)


if __name__ == "__main__":
    main()
