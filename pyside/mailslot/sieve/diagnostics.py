"""Where Sieve errors and warnings go, formatted as Pigeonhole formats them.

Diagnostics collects messages as lines "<location>: error: <message>." (location is
"<script>: line N" or "<script>", or empty); a sink function, when given, receives
each line as it is made (sieve-test prints them on stderr at once). max_errors
bounds how many errors are kept (0: no bound), like Pigeonhole's error handler;
warnings are always kept.

UserLog is the user's Sieve log file (<script>.log or sieve_user_log): opened for
append with mode 0600, rotated to "<file>.0" once it reaches USER_LOG_MAX_SIZE,
started with a "sieve: info: started log at <time>." line.

Errors: writing the user log never fails a delivery: an OSError there is handed to
the admin log callback and the lines go nowhere else.

Security: messages quote script content and run-time values (the `error`
command's text, a mailbox name made from a header), so a line may hold any
character. The collector keeps them as they are (sieve-test prints them raw, as
Pigeonhole's does); write_user_log() writes every control character (C0, DEL,
C1, U+2028/9) and every byte that was not UTF-8 as "?" (log.sanitize, Dovecot's
str_sanitize rule), so a script cannot forge a line or send terminal escapes
through the user's log.
"""

import os

from .limits import USER_LOG_MAX_SIZE


def sanitize(text, limit):
    """Shorten text for a message like Dovecot's str_sanitize (control chars -> ?)."""
    # Control characters and bytes that are not UTF-8 (kept as surrogate escapes)
    # become "?", as Dovecot's str_sanitize does.
    out = "".join("?" if (ord(c) < 32 or ord(c) == 127 or 0xDC80 <= ord(c) <= 0xDCFF)
                  else c for c in text)
    if len(out) > limit:
        out = out[:limit - 3] + "..." if limit > 3 else out[:limit]
    return out


class Diagnostics:
    """Error/warning collector shared by the lexer, parser, validator and runtime."""

    def __init__(self, max_errors=0, sink=None):
        self.max_errors = max_errors
        self.sink = sink
        self.lines = []
        self.errors = 0
        self.warnings = 0

    def more_allowed(self):
        return self.max_errors == 0 or self.errors < self.max_errors

    def _emit(self, location, kind, message):
        prefix = f"{location}: " if location else ""
        line = f"{prefix}{kind}: {message}."
        self.lines.append(line)
        if self.sink is not None:
            self.sink(line)

    def error(self, location, message):
        if self.more_allowed():
            self._emit(location, "error", message)
        self.errors += 1

    def warning(self, location, message):
        self._emit(location, "warning", message)
        self.warnings += 1

    def info(self, location, message):
        self._emit(location, "info", message)

    def error_lines(self):
        return [line for line in self.lines if ": error: " in line
                or line.startswith("error: ")]


def write_user_log(path, lines, admin_log=None):
    """Append lines to the user's Sieve log at path, rotating it at 10 KiB."""
    import time
    try:
        # why: O_NOFOLLOW -- the log lives in a user-writable directory; never write
        # through a symlink planted there.
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            if os.fstat(fd).st_size >= USER_LOG_MAX_SIZE:
                os.close(fd)
                fd = -1
                try:
                    os.rename(path, path + ".0")
                except FileNotFoundError:
                    pass
                fd = os.open(path, flags | os.O_TRUNC, 0o600)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S %z")
            # why: one entry per line -- no control character (a newline would
            # forge a line) or terminal escape from the script reaches the file.
            from ..log import sanitize
            data = f"sieve: info: started log at {stamp}.\n" + "".join(
                sanitize(line) + "\n" for line in lines)
            os.write(fd, data.encode("utf-8", "surrogateescape"))
        finally:
            if fd >= 0:
                os.close(fd)
    except OSError as exc:
        if admin_log is not None:
            admin_log(f"sieve: failed to write user log {path}: {exc.strerror}")
