"""Multi-uid sites: one recipient's delivery through mailslot-relay (exec per recipient).

    reply = deliver_through_relay(relay_path, config_path, lines, message, address,
                                  sender, mailbox)

With lmtp_relay_path set, a recipient whose userdb uid is not the server's own is
delivered by running the setuid relay (mailslot-relay(8)) exactly as Postfix's pipe
transport runs it -- `-f sender -a rcpt -r rcpt -d rcpt [-m mailbox] [-c config]` --
with the message on its stdin: this recipient's LMTP header lines, then the spooled
message. The relay checks its policy (the server's group must be a caller group),
drops to the target's uid and starts the engine, whose exit code becomes the reply
(EXIT_REPLIES): 0 is "250 ... Saved" (the engine returns 0 only once the copy is
saved and fsynced), 67 is 550 5.1.1, 77 550 5.7.1, anything else a 451 (the MTA
keeps the message). Correct, not fast: one interpreter start per recipient, the pipe
path's cost (docs/benchmarks.md).

Errors: a relay that cannot be started or writes no exit status is 451 4.3.0; the
engine's one stderr line is the reply's text (control characters removed).

Security: no shell; the argv carries the address as data after its option letter,
and the relay re-checks every argument against its policy. The server holds no
privilege of its own: it only may execute the relay because its group is a caller
group in relay.policy.
"""

import os
import subprocess

# sysexits -> (LMTP code, enhanced status), the pipe's answers read back.
EXIT_REPLIES = {0: ("250", "2.0.0"), 67: ("550", "5.1.1"), 77: ("550", "5.7.1"),
                75: ("451", "4.3.0")}
OTHER_EXIT = ("451", "4.3.0")
# The engine's stderr is one line; more is not read into memory.
MAX_STDERR = 4096


def deliver_through_relay(relay_path, config_path, lines, message, address, sender,
                          mailbox=None):
    """Run the relay for address; return the LMTP reply line."""
    argv = [relay_path]
    if config_path:
        argv += ["-c", config_path]
    argv += ["-f", sender or "<>", "-a", address, "-r", address, "-d", address]
    if mailbox:
        argv += ["-m", mailbox]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, close_fds=True,
                                env={"PATH": "/usr/bin:/bin"})
    except OSError as exc:
        return f"451 4.3.0 <{address}> cannot run mailslot-relay: {exc.strerror}"
    try:
        # Why stream: the message may be of any size; the spool is read in chunks.
        for line in lines:
            proc.stdin.write(line)
        for chunk in message.chunks():
            proc.stdin.write(chunk)
        proc.stdin.close()
    except BrokenPipeError:
        pass                    # the engine stopped reading: its exit code says why
    err = proc.stderr.read(MAX_STDERR)
    proc.stderr.close()
    code = proc.wait()
    lmtp, status = EXIT_REPLIES.get(code, OTHER_EXIT)
    if code == 0:
        return f"250 2.0.0 <{address}> Saved"
    text = " ".join(err.decode("utf-8", "replace").split())
    text = "".join(ch if " " <= ch != "\x7f" else "?" for ch in text)[:400]
    return f"{lmtp} {status} <{address}> {text or f'mailslot-relay exited {code}'}"
