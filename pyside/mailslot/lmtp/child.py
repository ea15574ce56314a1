"""The child side of isolated.py: one recipient's delivery in a process of its own.

    python3 -I [-S] -c "...child_main()" PACKAGE_DIR    (started by isolated.py)

Reads one JSON line (the settings path, the address, its ORCPT, the sender, the
transaction id, the Received line) and then the message from stdin; resolves the
recipient and delivers exactly as a connection thread of mailslot-lmtpd does
(delivery.Backend.deliver_one), but in this process's main thread, where Sieve's
CPU limit can interrupt a regular-expression match (sieve/cpu.py); writes the one
reply line to stdout and exits 0.

Errors: a job that is not one bounded line exits 75 with no reply (the parent
answers 451 4.3.0); every delivery failure is the reply, as in the server.
Security: runs as the server's uid; the job is data (addresses are userdb keys and
header values, never paths).
"""

import sys

from .delivery import Backend, _Job
from .isolated import MAX_JOB


def child_main():
    """The child: read the job and the message, deliver as the server's thread
    would have (its main thread now, so the CPU limit's signal works), print the
    reply line."""
    import json
    from ..message import Message, Spool
    from ..recipient import load_base_settings
    from .protocol import Transaction
    stdin = sys.stdin.buffer
    head = stdin.readline(MAX_JOB)
    if not head.endswith(b"\n"):
        return 75
    spec = json.loads(head)
    base = load_base_settings(spec["config"], [])
    backend = Backend(base, config_path=spec["config"], hostname=spec["hostname"])
    verdict = backend.verify(spec["address"])
    if not verdict.accepted:
        sys.stdout.write(verdict.reply + "\n")
        return 0
    tx = Transaction(spec["sender"])
    tx.id = spec["id"]
    tx.recipients.append((spec["address"], verdict.token))
    tx.originals.append(spec["original"])
    spool = Spool(base["mail_temp_dir"] or None)
    try:
        while True:
            data = stdin.read(65536)
            if not data:
                break
            spool.write(data)
        message = Message.from_spool(spool)
        job = _Job(tx, message, spec["received"].encode("latin-1"), spec["single"])
        try:
            reply = backend.deliver_one(job, 0)
        finally:
            message.close()
    finally:
        spool.close()
    sys.stdout.write(reply + "\n")
    sys.stdout.flush()
    return 0
