"""Multi-uid sites: one recipient's delivery through mailslot-relay (exec per recipient).

    reply = deliver_through_relay(relay_path, config_path, lines, message, address,
                                  sender, mailbox, settings=rcpt.settings)

With lmtp_relay_path set, a recipient whose userdb uid is not the server's own is
delivered by running the setuid relay (mailslot-relay(8)) as Postfix's pipe
transport runs it -- `-e -f sender -a rcpt -r rcpt -d rcpt [-m mailbox] [-c config]`
-- with the message on its stdin: this recipient's LMTP header lines, then the
spooled message. The relay checks its policy (the server's group must be a caller
group), drops to the target's uid and starts the engine.

-e (dovecot-lda's "write the rejection reason to stderr and exit 77" instead of
mailing a DSN): a refusal is the LMTP reply's to carry, as it is for an in-process
recipient, never a DSN behind a 250. engine_reply() turns the engine's exit code and
stderr line into the reply, through errors.py's one table (the same rows the
in-process path answers with): 0 is "250 ... Saved" (the engine returns 0 only once
the copy is saved and fsynced), 67 550 5.1.1, 77 550 5.7.1, 75 451 4.3.0, anything
else 451 (the MTA keeps the message) -- and a 77 or 75 whose reason is the
recipient's quota_exceeded_message is the quota's row: 552 5.2.2, or 452 4.2.2 with
quota_full_tempfail (the engine's exit code alone does not tell an over-quota
refusal from a Sieve reject). One difference from an in-process recipient remains:
a Sieve `reject` is answered 550 5.7.1 with its reason (the MTA bounces) where
in-process the engine mails the rejection itself and answers 250.
Correct, not fast: one interpreter start per recipient, the pipe path's cost
(docs/benchmarks.md).

Errors: a relay that cannot be started or writes no exit status is 451 4.3.0; the
engine's one stderr line is the reply's text (control characters removed).

Security: no shell; the argv carries the address as data after its option letter,
and the relay re-checks every argument against its policy. The server holds no
privilege of its own: it only may execute the relay because its group is a caller
group in relay.policy.
"""

import subprocess

# The engine's stderr is one line; more is not read into memory.
MAX_STDERR = 4096
# The engine's own prefix on that line (cli.report), not part of the reason.
ENGINE_PREFIX = "mailslot-lda: "


def engine_reply(code, text, address, settings=None):
    """The LMTP reply for an engine run's exit code and stderr line: the one place
    that reads a pipe delivery's outcome back, through errors.py's table."""
    from .. import errors
    if code == 0:
        return f"250 2.0.0 <{address}> Saved"
    text = " ".join(text.split())
    text = "".join(ch if " " <= ch != "\x7f" else "?" for ch in text)[:400]
    reason = text[len(ENGINE_PREFIX):] if text.startswith(ENGINE_PREFIX) else text
    quota = settings is not None and reason and \
        reason == settings.get("quota_exceeded_message")
    kind = {errors.EX_NOUSER: errors.UserUnknownError,
            errors.EX_NOPERM: errors.QuotaRejectedError if quota else errors.RejectedError,
            errors.EX_TEMPFAIL: errors.QuotaExceededError if quota
            else errors.TemporaryError}.get(code, errors.TemporaryError)
    row = errors.failure_for(kind())
    return f"{row.lmtp_code} {row.dsn_status} <{address}> " \
        f"{reason or f'mailslot-relay exited {code}'}"


def deliver_through_relay(relay_path, config_path, lines, message, address, sender,
                          mailbox=None, settings=None):
    """Run the relay for address; return the LMTP reply line."""
    argv = [relay_path]
    if config_path:
        argv += ["-c", config_path]
    # -e: a refusal comes back as exit 77 and a reason, for the reply (see above).
    argv += ["-e", "-f", sender or "<>", "-a", address, "-r", address, "-d", address]
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
    return engine_reply(code, err.decode("utf-8", "replace"), address, settings)
