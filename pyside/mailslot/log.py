"""The delivery log, in Dovecot's shape, to files, stderr or syslog.

A file line is Dovecot's (failures.c): the log_timestamp ("%b %d %H:%M:%S "), the
prefix "lda(bob)<pid>: ", the level ("Info: ", "Warning: ", "Error: "), the text:

    Nov 22 11:01:23 lda(bob)<9931>: Info: msgid=<abc@example.org>: saved mail to INBOX

To syslog (ident "mailslot", facility from syslog_facility) info lines carry no level
word, as Dovecot's syslog handler does; syslog_sink.py writes the datagram (RFC 3164,
the day space-padded) with the same injected clock as the files. Every timestamp comes
from the clock the caller passes (default time.time), so tests fix the date.
Dovecot 2.3 also puts a session id after the pid; mailslot has no sessions.

Settings, as Dovecot's: log_path "syslog" (the default; "" means syslog too), a file,
or "/dev/stderr" (this process's fd 2, not reopened); info_log_path "" means the same
as log_path. Warnings and errors go to log_path, info lines to info_log_path. A path
may start with "~/" (the user's home). deliver_log_format is expanded by delivered()
with Dovecot's deliver variables: %$ the status text, %m/%{msgid} ("unspecified" when
the message has none), %s/%{subject}, %f/%{from}, %e/%{from_envelope}, %p/%{size},
%w/%{vsize}, and %{to_envelope} %{delivery_time} %{session_time} %{storage_id}.
An unknown variable expands to "" and one error line names it (Dovecot does the same,
writing UNSUPPORTED_VARIABLE_x in its place). The default format is filled in
directly; any other is expanded by variables.py, imported only then.

Errors: a log file that cannot be opened (at construction, before anything is
delivered) or written raises errors.LogError with the reason; a write that fails with
EFBIG names the file-size limit that caused it (Postfix sets one from
mailbox_size_limit). An unknown syslog_facility raises errors.ConfigError. When the
syslog daemon cannot be reached, lines go to stderr (the MTA logs them) with one
warning that says why, instead of being lost as syslog(3) would lose them.

Security: text from mail headers and Sieve scripts is attacker-controlled. Every
control character (C0, DEL, C1, U+2028/2029) becomes '?', so a CR/LF in a Subject
cannot forge a second log line, and each field is cut to Dovecot's length (msgid 200
bytes, subject and envelope sender 80). Files are opened O_APPEND (one write per
line, so concurrent deliveries do not interleave), O_CREAT with mode 0600, O_CLOEXEC
(children such as sendmail do not inherit them), O_NONBLOCK only for the open (a FIFO
with no reader fails instead of hanging) and O_NOFOLLOW; see _open_file for why.
"""

import os
import time

from mailslot import errors

DEFAULT_DELIVER_LOG_FORMAT = "msgid=%m: %$"
DEFAULT_LOG_TIMESTAMP = "%b %d %H:%M:%S "
SYSLOG = "syslog"
SYSLOG_IDENT = "mailslot"
STDERR_PATH = "/dev/stderr"

# One-letter variables of deliver_log_format (lib-lda/mail-deliver.c).
DELIVER_LOG_KEYS = {
    "$": "$",
    "m": "msgid",
    "s": "subject",
    "f": "from",
    "e": "from_envelope",
    "p": "size",
    "w": "vsize",
}

# Dovecot's str_sanitize() limits for header-derived fields, in bytes of UTF-8.
FIELD_LIMITS = {"msgid": 200, "subject": 80, "from_envelope": 80}
# Any other field, and a whole log text: bounded so one line stays one write.
MAX_FIELD_BYTES = 1000
MAX_TEXT_BYTES = 8192

# Dovecot's syslog facility names (lib-master/syslog-util.c) and their RFC 3164
# codes (section 4.1.1, table 1).
SYSLOG_FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "local0": 16,
    "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22,
    "local7": 23,
}

_LEVEL_WORDS = {"info": "Info: ", "warning": "Warning: ", "error": "Error: "}


def sanitize(text, max_bytes=MAX_TEXT_BYTES):
    """Return text with control characters as '?', cut to max_bytes of UTF-8 ("...")."""
    if not (text.isascii() and text.isprintable()):
        text = "".join(
            "?" if (o < 0x20 or 0x7F <= o < 0xA0 or o in (0x2028, 0x2029)
                    or 0xD800 <= o < 0xE000) else c
            for c, o in ((c, ord(c)) for c in text))
    if len(text) <= max_bytes // 4:
        return text  # cannot exceed the limit even at four bytes a character
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    if max_bytes < 3:
        return ""
    # Cut on a character boundary, as Dovecot's str_sanitize() does.
    return data[: max_bytes - 3].decode("utf-8", "ignore") + "..."


def check_log_format(template):
    """Raise ValueError unless template is a valid deliver_log_format (for config.py)."""
    from mailslot.variables import referenced

    for name in referenced(template, short_keys=DELIVER_LOG_KEYS):
        if name not in _DELIVER_LOG_NAMES and ":" not in name:
            raise ValueError(f"unknown variable '%{{{name}}}' in {template!r}")


_DELIVER_LOG_NAMES = frozenset(DELIVER_LOG_KEYS.values()) | {
    "to_envelope", "delivery_time", "session_time", "storage_id",
    "pid", "uid", "gid", "hostname",
}


def _syslog_facility(name):
    if name not in SYSLOG_FACILITIES:
        raise errors.ConfigError(
            f"unknown syslog facility {name!r} (known: {', '.join(SYSLOG_FACILITIES)})",
            key="syslog_facility")
    return SYSLOG_FACILITIES[name] << 3


class DeliveryLog:
    """Where a delivery's log lines go: log_path/info_log_path files, stderr, syslog."""

    def __init__(self, *, user, log_path, info_log_path, syslog_facility,
                 deliver_log_format, log_timestamp=DEFAULT_LOG_TIMESTAMP,
                 service="lda", pid=None, home=None, clock=time.time, tag=None):
        self.clock = clock
        self.deliver_log_format = deliver_log_format
        self.log_timestamp = log_timestamp
        # tag: which path delivered, "lda(bob)<pid><handoff>: " on the fast path.
        tagged = f"<{tag}>" if tag else ""
        self.prefix = (f"{service}({sanitize(user, MAX_FIELD_BYTES)})"
                       f"<{pid or os.getpid()}>{tagged}: ")
        self._home = home
        self._opened = {}  # path -> fd this object opened (and must close)
        facility = _syslog_facility(syslog_facility)  # checked always, as Dovecot
        error_path = log_path or SYSLOG
        info_path = info_log_path or error_path
        self._error_sink = self._open(error_path, "log_path")
        self._info_sink = self._open(info_path, "info_log_path" if info_log_path else "log_path")
        self._syslog = None
        if SYSLOG in (error_path, info_path):
            from mailslot.syslog_sink import SyslogSink  # lazily: files are the fast case

            self._syslog = SyslogSink(ident=SYSLOG_IDENT, facility=facility, clock=clock,
                                      fallback=self._write_stderr)

    # --- opening ------------------------------------------------------------------

    def _open(self, path, setting):
        """Return a sink: SYSLOG, or (path, fd) of an open log file."""
        if path == SYSLOG:
            return SYSLOG
        if path == STDERR_PATH:
            return (path, 2)
        if path.startswith("~/"):
            home = self._home or os.environ.get("HOME")
            if not home:
                self.close()
                raise errors.LogError(f"{setting} {path}: no home directory for '~/'")
            path = home.rstrip("/") + path[1:]
        fd = self._opened.get(path)
        if fd is None:
            try:
                fd = self._open_file(path)
            except OSError as exc:
                self.close()
                raise errors.LogError(_open_failure(setting, path, exc)) from None
            self._opened[path] = fd
        return (path, fd)

    @staticmethod
    def _open_file(path):
        # Why O_NOFOLLOW: the engine runs as the recipient and writes text that
        # senders choose. A symlink planted at the log path (in a shared or
        # user-writable directory) could aim those lines at a file the recipient
        # can write, such as ~/.profile. Refusing a symlink as the last component
        # closes that; an administrator points log_path at the real file instead.
        # Dovecot does not do this: mailslot's engine writes as any user.
        flags = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                 | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
        fd = os.open(path, flags, 0o600)
        os.set_blocking(fd, True)
        return fd

    def close(self):
        """Close the files this log opened (never fd 2) and the syslog socket."""
        if getattr(self, "_syslog", None) is not None:
            self._syslog.close()
        opened, self._opened = self._opened, {}
        for fd in opened.values():
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # --- writing ------------------------------------------------------------------

    def info(self, text):
        """Log an informational line (to info_log_path)."""
        self._write(self._info_sink, "info", text)

    def warning(self, text):
        """Log a warning (to log_path)."""
        self._write(self._error_sink, "warning", text)

    def error(self, text):
        """Log an error (to log_path)."""
        self._write(self._error_sink, "error", text)

    def delivered(self, values, status):
        """Log one delivery result: deliver_log_format expanded with values and status.

        values maps long names (msgid, subject, from, from_envelope, size, vsize,
        to_envelope, delivery_time, session_time, storage_id) to strings, or to
        functions returning one (called only when the template uses the name: a
        large message's vsize costs a pass over it); status is the %$ text, e.g.
        "saved mail to INBOX". Nothing is logged when deliver_log_format is empty.
        """
        template = self.deliver_log_format
        if not template:
            return
        if template == DEFAULT_DELIVER_LOG_FORMAT:
            # "msgid=%m: %$" needs no expander: every delivery logs it.
            msgid = values.get("msgid")
            msgid = msgid() if callable(msgid) else msgid
            msgid = sanitize(str(msgid), FIELD_LIMITS["msgid"]) if msgid else ""
            self.info(f"msgid={msgid or 'unspecified'}: {sanitize(status)}")
            return
        from mailslot.variables import expand, referenced

        try:
            used = referenced(template, short_keys=DELIVER_LOG_KEYS)
        except ValueError:
            used = None     # malformed: expanded below as far as it goes, all values
        table = {}
        for key, value in values.items():
            if callable(value):
                value = value() if used is None or key in used else None
            if value is not None:
                table[key] = sanitize(str(value), FIELD_LIMITS.get(key, MAX_FIELD_BYTES))
        if not table.get("msgid"):
            table["msgid"] = "unspecified"
        table["$"] = sanitize(status)
        try:
            text = expand(template, table, short_keys=DELIVER_LOG_KEYS)
        except ValueError as exc:
            self.error(f"Failed to expand deliver_log_format={template}: {exc}")
            try:
                text = expand(template, table, short_keys=DELIVER_LOG_KEYS, strict=False)
            except ValueError:
                text = table["$"]  # a malformed template: keep the status at least
        self.info(text)

    def _write(self, sink, level, text):
        text = sanitize(str(text))
        if sink == SYSLOG:
            word = "" if level == "info" else _LEVEL_WORDS[level]
            self._syslog.send(level, self.prefix + word + text, fallback_text=text)
            return
        self._write_line(sink, level, text)

    def _write_stderr(self, level, text):
        """Write one file-shaped line to fd 2: syslog's fallback."""
        try:
            self._write_line((STDERR_PATH, 2), level, text)
        except errors.LogError:
            pass  # nowhere left to say it; the delivery's outcome does not change

    def _write_line(self, sink, level, text):
        path, fd = sink
        line = self._timestamp() + self.prefix + _LEVEL_WORDS[level] + text + "\n"
        data = line.encode("utf-8", "replace")
        try:
            _write_all(fd, data)
        except OSError as exc:
            raise errors.LogError(_write_failure(path, exc)) from None

    def _timestamp(self):
        stamp = self.log_timestamp
        if not stamp:
            return ""
        now = self.clock()
        if "%{usecs}" in stamp:
            stamp = stamp.replace("%{usecs}", "%06d" % int((now % 1) * 1_000_000))
        return time.strftime(stamp, time.localtime(now))


def _write_all(fd, data):
    """Write all of data to fd; a zero-length write means the disk is full."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            # fd 2 may be non-blocking (its flags are shared with the MTA): wait.
            import select

            select.select([], [fd], [])
            continue
        if written == 0:
            raise OSError(28, os.strerror(28))  # ENOSPC, as Dovecot's log_fd_write
        view = view[written:]


def _open_failure(setting, path, exc):
    import errno  # lazily: only on the error path

    reason = exc.strerror or str(exc)
    if exc.errno == errno.ELOOP:
        reason = "it is a symbolic link, which mailslot refuses (point the setting at the file)"
    elif exc.errno == errno.ENXIO:
        reason = "it is a FIFO with no reader"
    elif exc.errno == errno.EACCES:
        reason += f" (running as uid {os.getuid()})"
    return f"{setting} {path}: cannot open the log: {reason}"


def _write_failure(path, exc):
    import errno

    reason = exc.strerror or str(exc)
    if exc.errno == errno.EFBIG:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        shown = "unlimited" if limit == resource.RLIM_INFINITY else f"{limit} bytes"
        reason = (f"the file reached this process's file size limit (ulimit -f: {shown}; "
                  f"Postfix sets it from mailbox_size_limit)")
    return f"cannot write the log {path}: {reason}"
