"""Handing a finished message to the MTA: sendmail_path or submission_host.

    transport = make_transport(settings)      # from the delivery's settings
    transport.check()                         # before anything is saved
    transport.send(sender, [rcpt, ...], chunks)

sender is an address without brackets ("" = the null sender <>), recipients a
list of addresses, chunks an iterable of bytes with LF line endings (a message is
streamed, never held whole).

SendmailTransport runs sendmail_path (default /usr/sbin/sendmail) with an argv,
never through a shell: `sendmail -i -f <sender> -- <rcpt>...` ("<>" for the null
sender, as Dovecot passes it), the message on its stdin, stderr into a bounded
buffer for the error text. Postfix's sendmail needs its setgid postdrop, which
PR_SET_NO_NEW_PRIVS forbids; under no-new-privs check() refuses sendmail_path with a
clear error, so the delivery defers instead of hanging in postdrop's retries.

SmtpTransport speaks SMTP to submission_host ("host", "host:port", "[v6]:port";
port 25 by default, as Dovecot) with smtplib: STARTTLS when submission_ssl is
"starttls", TLS from the start for "smtps" (the system's CA store, the host name
checked), AUTH when submission_user is set, every step within submission_timeout.
DATA is streamed with CRLF line endings and dot-stuffing (RFC 5321 4.5.2).

CaptureTransport keeps what would have been sent (sieve-test, tests).

Errors: SendError (errors.py) with the reason: sendmail's exit status and first
stderr line, the SMTP reply, a timeout. Whether that fails the delivery is the
caller's choice (send/outgoing.py).

Security: addresses reach the argv after "--" and are checked (no control
characters, no leading "-"), so none becomes an option; the environment is the
delivery's, already cleaned (cli.clear_environment). The SMTP password lives in
the settings file: the file must be readable only by the delivery's users.
"""

import os
import time

from ..errors import SendError

# RFC 5321 4.5.3.2: the client waits minutes; a delivery agent must not hold the
# MTA's pipe that long. Dovecot's submission_timeout default is 30 s.
DEFAULT_TIMEOUT = 30
# Only the first part of sendmail's complaints is kept for the log.
STDERR_LIMIT = 4096
# RFC 5321 4.5.3.1.3: a path is at most 256 octets.
MAX_PATH_OCTETS = 256


def no_new_privs():
    """True when this process runs with PR_SET_NO_NEW_PRIVS (from /proc/self/status)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"NoNewPrivs:"):
                    return line.split()[1:2] == [b"1"]
    except OSError:
        pass
    return False


def check_address(address):
    """Refuse an address that could become an option or break a command line."""
    if len(address.encode("utf-8", "surrogateescape")) > MAX_PATH_OCTETS:
        raise SendError(f"address too long for SMTP: {address[:64]!r}...")
    if address.startswith("-") or any(ord(c) < 0x20 or c in "\x7f<>" for c in address):
        raise SendError(f"refusing to send to or from the address {address!r}")
    return address


class SendmailTransport:
    name = "sendmail"

    def __init__(self, path, *, timeout=DEFAULT_TIMEOUT, nnp=no_new_privs):
        self.path = path
        self.timeout = timeout
        self._nnp = nnp

    def describe(self):
        return f"sendmail_path {self.path}"

    def check(self):
        if not os.path.isabs(self.path):
            raise SendError(f"sendmail_path must be an absolute path: {self.path!r}")
        if self._nnp():
            raise SendError(
                f"sendmail_path {self.path} cannot work under no_new_privs (Postfix's "
                "sendmail needs its setgid postdrop): set submission_host, or "
                "no_new_privs = no in the relay's policy")

    def send(self, sender, recipients, chunks):
        import subprocess
        import tempfile
        self.check()
        argv = [self.path, "-i", "-f", check_address(sender) if sender else "<>", "--"]
        argv += [check_address(r) for r in recipients]
        err = tempfile.TemporaryFile()
        try:
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=err,
                                        close_fds=True)
            except OSError as exc:
                raise SendError(f"cannot run {self.path}: {exc.strerror}") from None
            deadline = time.monotonic() + self.timeout
            try:
                _write_pipe(proc.stdin, chunks, deadline)
            except BrokenPipeError:
                pass       # sendmail gave up reading: its exit status says why
            except SendError:
                proc.kill()
                proc.wait()
                raise
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            try:
                status = proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise SendError(f"{self.path} did not finish within {self.timeout} s") \
                    from None
            if status != 0:
                err.seek(0)
                text = err.read(STDERR_LIMIT).decode("utf-8", "replace").strip()
                first = "".join(c if c >= " " else " " for c in text.split("\n")[0])
                how = f"exit status {status}" if status > 0 else f"signal {-status}"
                raise SendError(f"{self.path} failed with {how}"
                                + (f": {first}" if first else ""))
        finally:
            err.close()


def _write_pipe(pipe, chunks, deadline):
    """Write chunks to a pipe without blocking past deadline."""
    import select
    fd = pipe.fileno()
    os.set_blocking(fd, False)
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SendError("timed out writing the message to sendmail")
            _, writable, _ = select.select([], [fd], [], left)
            if not writable:
                continue
            try:
                view = view[os.write(fd, view[:65536]):]
            except BlockingIOError:
                continue


class SmtpTransport:
    name = "smtp"

    def __init__(self, host, *, timeout=DEFAULT_TIMEOUT, ssl_mode="no", user="",
                 password="", helo=None):
        self.host, self.port = parse_host_port(host)
        self.timeout = timeout
        self.ssl_mode = ssl_mode
        self.user = user
        self.password = password
        self.helo = helo

    def describe(self):
        return f"submission_host {self.host}:{self.port}"

    def check(self):
        if self.ssl_mode not in ("no", "starttls", "smtps"):
            raise SendError(f"submission_ssl must be no, starttls or smtps, "
                            f"not {self.ssl_mode!r}")

    def send(self, sender, recipients, chunks):
        import smtplib
        self.check()
        sender = check_address(sender) if sender else ""
        recipients = [check_address(r) for r in recipients]
        for address in [sender] + recipients:
            if not address.isascii():
                # RFC 6531: an address that is not ASCII needs SMTPUTF8, which this
                # client does not speak (sendmail_path can pass it to the MTA).
                raise SendError(f"{self.describe()}: cannot send to or from the "
                                f"non-ASCII address {address!r} (no SMTPUTF8)")
        try:
            conn = self._connect(smtplib)
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError(f"cannot connect to {self.describe()}: {exc}") from None
        try:
            code, text = conn.mail(sender)
            if code != 250:
                raise SendError(f"{self.describe()}: MAIL FROM refused: {_reply(code, text)}")
            for rcpt in recipients:
                code, text = conn.rcpt(rcpt)
                if code not in (250, 251):
                    raise SendError(f"{self.describe()}: RCPT TO:<{rcpt}> refused: "
                                    f"{_reply(code, text)}")
            code, text = conn.docmd("DATA")
            if code != 354:
                raise SendError(f"{self.describe()}: DATA refused: {_reply(code, text)}")
            stuffer = _DotStuffer()
            for chunk in chunks:
                out = stuffer.feed(chunk)
                if out:
                    conn.send(out)
            conn.send(stuffer.finish())
            code, text = conn.getreply()
            if code != 250:
                raise SendError(f"{self.describe()}: message refused: {_reply(code, text)}")
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError(f"{self.describe()}: {exc}") from None
        finally:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()

    def _connect(self, smtplib):
        # The hostname setting, else the system's name: never smtplib's default,
        # socket.getfqdn(), whose reverse lookup can hang on a host without DNS.
        helo = self.helo or os.uname().nodename
        if self.ssl_mode == "smtps":
            import ssl
            conn = smtplib.SMTP_SSL(self.host, self.port, local_hostname=helo,
                                    timeout=self.timeout,
                                    context=ssl.create_default_context())
        else:
            conn = smtplib.SMTP(self.host, self.port, local_hostname=helo,
                                timeout=self.timeout)
        conn.ehlo_or_helo_if_needed()
        if self.ssl_mode == "starttls":
            import ssl
            conn.starttls(context=ssl.create_default_context())
            conn.ehlo()
        if self.user:
            conn.login(self.user, self.password)
        return conn


def _reply(code, text):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"


class _DotStuffer:
    """LF -> CRLF and a '.' doubled at each line start (RFC 5321 4.5.2), streaming."""

    def __init__(self):
        self.at_line_start = True

    def feed(self, chunk):
        """chunk: LF line endings (what the engine stores and composes)."""
        if not chunk:
            return b""
        data = chunk.replace(b"\n", b"\r\n")
        if self.at_line_start and data.startswith(b"."):
            data = b"." + data
        data = data.replace(b"\r\n.", b"\r\n..")
        self.at_line_start = data.endswith(b"\n")
        return data

    def finish(self):
        return (b"" if self.at_line_start else b"\r\n") + b".\r\n"


def parse_host_port(text):
    """"host", "host:port" or "[v6]:port" -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise SendError(f"submission_host has no host: {text!r}")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise SendError(f"submission_host has a bad port: {text!r}")
    return host, int(port) if port else 25


class CaptureTransport:
    """Keeps (sender, recipients, bytes) of each message instead of sending it."""

    name = "capture"

    def __init__(self):
        self.sent = []

    def describe(self):
        return "nothing (messages are shown, not sent)"

    def check(self):
        pass

    def send(self, sender, recipients, chunks):
        self.sent.append((sender, list(recipients), b"".join(chunks)))


def make_transport(settings, *, helo=None):
    """The transport the settings ask for: submission_host when set, else sendmail."""
    timeout = settings.get("submission_timeout") or DEFAULT_TIMEOUT
    if settings.get("submission_host"):
        return SmtpTransport(settings["submission_host"], timeout=timeout,
                             ssl_mode=settings.get("submission_ssl") or "no",
                             user=settings.get("submission_user") or "",
                             password=settings.get("submission_password") or "",
                             helo=helo)
    return SendmailTransport(settings.get("sendmail_path") or "/usr/sbin/sendmail",
                             timeout=timeout)
