"""The LMTP benchmark's load generators: the C one (bench/lmtp_load.c) and the Python one.

    gen = Generator.create(workdir)          # compiles lmtp_load.c with cc -O2, or
                                             # falls back to Python with a warning
    result = gen.run(socket_path, connections, seconds, message, rcpts)
    # {"messages": 250s counted, "elapsed": s, "cpu": the generator's CPU seconds}

Both drive a server the same way (Postfix's LMTP client against a server offering
PIPELINING): LHLO once per connection; per message MAIL FROM, RCPT TO and DATA in one
write, the three replies checked (250, 250, 354), the dot-stuffed content and "." in
one write, its one reply (one recipient) checked for 250. Each connection delivers to
rcpts[i % len(rcpts)]. The clock starts once every connection has had its LHLO reply;
after `seconds` no connection starts a new transaction, and the clock stops at the
last final reply. Any other reply, or a connection the server closes, fails the run
(SystemExit): a run with a failed transaction is no measurement.

Why a C generator: on the 2-core bench machine the generator shares the cores with
the servers it measures, and the physical limit they are held against (a create
loop) has no generator beside it. The Python one (a thread per connection in the
bench process) costs 0.07-0.16 ms of CPU per message, the C one (one thread on
epoll, non-blocking sockets) 0.03-0.08 ms (docs/benchmarks.md, "The load generator
and the memory figures"): both small beside either server's 0.9-3 ms, the C one
about half. "cpu" is user + system of the generator alone:
getrusage(RUSAGE_SELF) of the C program (it prints it), or of this process around
the Python run (its other threads are idle then).
"""

import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "lmtp_load.c")
SENDER = b"sender@bench.test"
# Beyond the run's own seconds: connecting, LHLO, the last transactions, QUIT.
# lmtp_load.c fails by itself after 60 s without a reply.
SLACK_SECONDS = 120


def compile_c(dest_dir):
    """Compile lmtp_load.c into dest_dir; the binary's path, or None (and why) when
    there is no C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None, "no C compiler (cc) found"
    out = os.path.join(dest_dir, "lmtp_load")
    run = subprocess.run([cc, "-O2", "-Wall", "-o", out, SOURCE],
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"bench: {cc} failed on {SOURCE}:\n{run.stderr}")
    return out, None


class Generator:
    """One of the two generators; `kind` is "c" or "python"."""

    def __init__(self, kind, binary=None):
        self.kind, self.binary = kind, binary

    @classmethod
    def create(cls, workdir, kind="c"):
        if kind == "python":
            return cls("python")
        binary, why = compile_c(workdir)
        if binary is None:
            sys.stderr.write(f"bench: WARNING: {why}; the Python load generator runs "
                             "instead, and its CPU competes with the servers\n")
            return cls("python")
        return cls("c", binary)

    def run(self, sock_path, connections, seconds, message, rcpts, workdir):
        """message: the bytes (LF line ends); workdir: where the C one's copy goes."""
        if self.kind == "python":
            return run_python(sock_path, connections, seconds, message, rcpts)
        path = os.path.join(workdir, "lmtp_load_message.eml")
        with open(path, "wb") as f:
            f.write(message)
        return run_c(self.binary, sock_path, connections, seconds, path, rcpts)


def run_c(binary, sock_path, connections, seconds, message_path, rcpts):
    argv = [binary, sock_path, str(connections), str(seconds), message_path]
    argv += [r.decode() if isinstance(r, bytes) else r for r in rcpts]
    try:
        out = subprocess.run(argv, capture_output=True, text=True,
                             timeout=seconds + SLACK_SECONDS)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"bench: {binary} did not finish in {seconds + SLACK_SECONDS} s")
    fields = dict(kv.split("=", 1) for kv in out.stdout.split())
    if out.returncode != 0 or fields.get("errors") != "0":
        raise SystemExit(f"bench: LMTP load failed (exit {out.returncode}): "
                         f"{out.stderr.strip()[-2000:]}")
    return {"messages": int(fields["messages"]), "elapsed": float(fields["elapsed"]),
            "cpu": float(fields["user"]) + float(fields["sys"])}


def wire_content(message):
    """The message as it goes after 354: CRLF, dot-stuffed (RFC 5321 4.5.2), "."."""
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n"
                    for l in lines) + b".\r\n"


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.buf = b""
        self.expect(b"220")
        self.s.sendall(b"LHLO bench.client\r\n")
        self.expect(b"250")

    def reply(self):
        """The last line of the next reply (continuation lines "ddd-" skipped)."""
        while True:
            while b"\r\n" not in self.buf:
                data = self.s.recv(65536)
                if not data:
                    raise EOFError("server closed the connection")
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            if line[3:4] != b"-":
                return line

    def expect(self, code):
        line = self.reply()
        if not line.startswith(code):
            raise RuntimeError(f"expected {code.decode()}, got {line!r}")
        return line

    def deliver(self, rcpt, content):
        self.s.sendall(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (SENDER, rcpt))
        for code in (b"250", b"250", b"354"):
            self.expect(code)
        self.s.sendall(content)
        self.expect(b"250")


def run_python(sock_path, connections, seconds, message, rcpts):
    """The Python generator: a thread per connection in this process."""
    content = wire_content(message)
    rcpts = [r.encode() if isinstance(r, str) else r for r in rcpts]
    counts = [0] * connections
    errors = []
    start_at = threading.Barrier(connections + 1)
    stop_at = [0.0]
    last_reply = [0.0] * connections

    def worker(i):
        conn = None
        try:
            conn = Conn(sock_path)
            start_at.wait()
            rcpt = rcpts[i % len(rcpts)]
            while time.perf_counter() < stop_at[0]:
                conn.deliver(rcpt, content)
                counts[i] += 1
            last_reply[i] = time.perf_counter()
            conn.s.sendall(b"QUIT\r\n")
            conn.expect(b"221")
        except Exception as exc:     # reported, the run is invalid
            errors.append(exc)
            try:
                start_at.abort()
            except threading.BrokenBarrierError:
                pass
        finally:
            # Closed now, as the C generator's exit closes its own: not whenever the
            # exception (and the frame holding conn) is collected.
            if conn is not None:
                conn.s.close()

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 3600
    try:
        start_at.wait()
    except threading.BrokenBarrierError:
        pass
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for t in threads:
        t.join()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    if errors:
        raise SystemExit(f"bench: LMTP load failed: {errors[0]!r}")
    return {"messages": sum(counts), "elapsed": max(last_reply) - began,
            "cpu": (cpu_after.ru_utime - cpu_before.ru_utime
                    + cpu_after.ru_stime - cpu_before.ru_stime)}
