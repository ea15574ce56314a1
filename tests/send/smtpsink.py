"""A real SMTP server on 127.0.0.1 for the tests: it records what it is sent.

    with SmtpSink() as sink:                 # listens on 127.0.0.1, a free port
        ... submission_host = sink.address ...
        mail = sink.wait(1)                  # [Received(sender, recipients, data)]

It speaks enough RFC 5321 for smtplib (EHLO/HELO, MAIL, RCPT, DATA with
dot-unstuffing, RSET, NOOP, QUIT) on a socket in a thread of the test process.
fail_data = "451 4.3.0 try later" makes it refuse every message after DATA.
auth=True offers AUTH PLAIN and records the (user, password) pairs in .logins.
data is what arrived between DATA and the final dot, CRLF turned to LF.
"""

import socket
import threading
import time


class Received:
    def __init__(self, sender, recipients, data):
        self.sender, self.recipients, self.data = sender, recipients, data

    def __repr__(self):
        return f"Received({self.sender!r}, {self.recipients!r}, {len(self.data)} bytes)"


class SmtpSink:
    def __init__(self, fail_data=None, auth=False):
        self.fail_data = fail_data
        self.auth = auth
        self.logins = []
        self.messages = []
        self.commands = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)   # wakes the accept()
        except OSError:
            pass
        self._sock.close()

    def wait(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        with self._lock:
            return list(self.messages)

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        f = conn.makefile("rb")

        def say(line):
            conn.sendall(line.encode() + b"\r\n")

        try:
            say("220 sink.test ESMTP")
            sender, rcpts = None, []
            while True:
                line = f.readline(4096)
                if not line:
                    return
                cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
                with self._lock:
                    self.commands.append(cmd)
                verb = cmd[:4].upper()
                if verb == "EHLO":
                    conn.sendall(b"250-sink.test\r\n250-8BITMIME\r\n"
                                 + (b"250-AUTH PLAIN\r\n" if self.auth else b"")
                                 + b"250 PIPELINING\r\n")
                elif verb == "AUTH" and self.auth:
                    import base64
                    _, user, password = base64.b64decode(cmd.split()[2]).split(b"\0")
                    with self._lock:
                        self.logins.append((user.decode(), password.decode()))
                    say("235 2.7.0 Authentication successful")
                elif verb == "HELO":
                    say("250 sink.test")
                elif verb == "MAIL":
                    sender = cmd[cmd.index("<") + 1:cmd.rindex(">")]
                    rcpts = []
                    say("250 2.1.0 Ok")
                elif verb == "RCPT":
                    rcpts.append(cmd[cmd.index("<") + 1:cmd.rindex(">")])
                    say("250 2.1.5 Ok")
                elif verb == "DATA":
                    say("354 End data with <CR><LF>.<CR><LF>")
                    lines = []
                    while True:
                        raw = f.readline(1 << 20)
                        if not raw or raw == b".\r\n":
                            break
                        if raw.startswith(b".."):
                            raw = raw[1:]
                        lines.append(raw.replace(b"\r\n", b"\n"))
                    if self.fail_data:
                        say(self.fail_data)
                    else:
                        with self._lock:
                            self.messages.append(Received(sender, rcpts, b"".join(lines)))
                        say("250 2.0.0 Ok: queued")
                elif verb == "QUIT":
                    say("221 2.0.0 Bye")
                    return
                else:
                    say("250 2.0.0 Ok")
        except OSError:
            pass
        finally:
            f.close()
            conn.close()
