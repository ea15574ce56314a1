"""A small syslog client: RFC 3164 lines to /dev/log, with a clock the caller injects.

mailslot writes its own syslog datagrams instead of calling syslog(3) for two reasons:
syslog(3) drops a line without a word when /dev/log cannot be reached (no syslog
daemon, a chroot, a container), and it stamps each line with the machine's clock,
which a test cannot fix. The line is the one glibc's syslog(3) sends for
openlog(ident, LOG_NDELAY, facility) without LOG_PID:

    <PRI>Mmm dd HH:MM:SS ident: text

with the month in the C locale and the day padded with a space (RFC 3164 section
4.1.2: "Dec  4"), in local time.

Errors: none escape. When /dev/log cannot be reached (at open or on a send), the line
goes to the fallback (the log's stderr writer) and the reason is reported once through
it, so the MTA's log shows why its lines moved. A send that fails once is retried
after one reconnect (a restarted syslog daemon has a new socket).

Security: the text is sanitized by the caller (log.sanitize: no control characters,
bounded length); this module adds nothing from a message. The socket is opened
close-on-exec, so children (sendmail) do not inherit it.
"""

import _socket
import time

DEV_LOG = "/dev/log"
# RFC 3164 section 4.1.2: the month as three letters of the C locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# syslog(3) severities (RFC 3164 table 2) by mailslot's level names.
SEVERITIES = {"error": 3, "warning": 4, "info": 6}


def rfc3164_timestamp(epoch):
    """Return "Mmm dd HH:MM:SS" for epoch seconds in local time, the day space-padded."""
    t = time.localtime(epoch)
    return "%s %2d %02d:%02d:%02d" % (_MONTHS[t.tm_mon - 1], t.tm_mday,
                                      t.tm_hour, t.tm_min, t.tm_sec)


class SyslogSink:
    """Send lines to the syslog daemon; fall back to a writer when it is not there."""

    def __init__(self, *, ident, facility, clock, fallback, path=DEV_LOG):
        self.ident = ident
        self.facility = facility  # the LOG_* facility code, already shifted (mail = 16)
        self.clock = clock
        self.fallback = fallback  # fallback(level, text): write one line elsewhere
        self.path = path
        self._sock = None
        self._stream = False
        self._warned = False
        # LOG_NDELAY's promise: connect now, while the process can still reach /dev/log.
        self._connect()

    def _connect(self):
        self.close()
        last = None
        for kind, stream in ((_socket.SOCK_DGRAM, False), (_socket.SOCK_STREAM, True)):
            sock = _socket.socket(_socket.AF_UNIX, kind | _socket.SOCK_CLOEXEC)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                last = exc
                if exc.errno == 91:  # EPROTOTYPE: the daemon listens on a stream socket
                    continue
                break
            self._sock, self._stream = sock, stream
            return None
        return last

    def send(self, level, text, fallback_text=None):
        """Send one line at level ("info", "warning", "error").

        fallback_text is what the fallback writer gets instead of text, when the
        daemon is not reachable (the writer adds its own prefix); default text.
        """
        line = "<%d>%s %s: %s" % (self.facility | SEVERITIES[level],
                                  rfc3164_timestamp(self.clock()), self.ident, text)
        data = line.encode("utf-8", "replace")
        if self._stream:
            data += b"\0"  # octet-stuffing as syslog(3) does on a stream socket
        reason = None
        for _attempt in (1, 2):
            if self._sock is None:
                reason = self._connect() or reason
                if self._sock is None:
                    break
            try:
                self._sock.send(data)
                return
            except OSError as exc:
                reason = exc
                self.close()
        self._fall_back(level, text if fallback_text is None else fallback_text, reason)

    def _fall_back(self, level, text, reason):
        if not self._warned:
            self._warned = True
            why = (reason.strerror if isinstance(reason, OSError) and reason.strerror
                   else str(reason or "not reachable"))
            self.fallback("warning", f"syslog is not reachable ({self.path}: {why}); "
                                     f"log lines go to stderr instead")
        self.fallback(level, text)

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

