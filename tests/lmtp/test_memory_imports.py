"""What a worker of mailslot-lmtpd loads: every module is private memory in each
worker process (docs/benchmarks.md, "LMTP memory"), so the server's own code avoids
the standard library's heavy packages where a few lines do: concurrent.futures and
logging (the thread pools: lmtp/threads.py), email.utils (the Received date:
delivery._rfc5322_date), tempfile (the lock files' directory: storage/lock_files.py).

The check runs the real server (Server.run on a unix socket, as the daemon's uid)
and delivers a message through it, then lists what the process imported.
"""

import email.utils
import os
import subprocess
import sys
import time

import pytest

from tests.support import REPO, needs_root
from tests.lmtp.lmtpsite import Site

HEAVY = ("concurrent", "logging", "email", "tempfile", "urllib", "queue")

RUN = """
import os, signal, socket, sys, threading
sys.path.insert(0, sys.argv[1])
from mailslot.lmtp.server import Server, listen_sockets
server = Server(sys.argv[2], log=lambda text: None)
sockets = listen_sockets(server.backend.base["lmtp_listen"])
path = server.backend.base["lmtp_listen"].split()[0].strip('[]",')[5:]

def client():
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"LHLO t\\r\\nMAIL FROM:<s@x>\\r\\nRCPT TO:<alice@example.org>\\r\\nDATA\\r\\n")
    while not f.readline().startswith(b"354"):
        pass
    s.sendall(b"Subject: x\\r\\n\\r\\nbody\\r\\n.\\r\\n")
    print("REPLY", f.readline().decode().strip())
    s.close()
    os.kill(os.getpid(), signal.SIGTERM)

threading.Timer(0.3, client).start()
server.run(sockets)
print("HEAVY", sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[3].split())))
"""


@needs_root
def test_a_delivering_server_loads_no_heavy_package():
    site = Site.create()
    try:
        argv = ["setpriv", f"--reuid={site.uid}", f"--regid={site.uid}", "--clear-groups",
                "--", sys.executable, "-I", "-S", "-c", RUN,
                os.path.join(REPO, "pyside"), site.conf, " ".join(HEAVY)]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                             cwd=site.top, env={"PATH": "/usr/bin:/bin"})
        assert "REPLY 250 2.0.0 <alice@example.org> Saved" in out.stdout, out.stderr
        assert "HEAVY []" in out.stdout, out.stdout + out.stderr
        assert len(site.messages("alice")) == 1
    finally:
        site.cleanup()


ZONES = ("UTC", "Europe/Berlin", "America/St_Johns", "Asia/Kolkata", "Asia/Kathmandu",
         "Australia/Lord_Howe", "Pacific/Chatham", "America/Los_Angeles")


@pytest.mark.parametrize("zone", ZONES)
def test_received_date_is_formatdates_text_in_every_zone(zone, monkeypatch):
    """The Received date written without email.utils is formatdate's text, in zones
    with half- and quarter-hour offsets and daylight saving, over 1970-2033."""
    from mailslot.lmtp import delivery
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        for when in list(range(0, 2_000_000_000, 7_777_777)) + [1796426240, 1796426241]:
            delivery._last_date = (None, None)
            assert delivery._rfc5322_date(when) == \
                email.utils.formatdate(when, localtime=True), (zone, when)
    finally:
        monkeypatch.undo()
        time.tzset()
