"""mailslot-lmtpd's idle limit (RFC 5321 4.5.3.2.7), kept by the kernel: the
connection's socket is blocking with SO_RCVTIMEO/SO_SNDTIMEO (lmtp/server.py), not a
Python timeout, which polls before every recv() and send(). A client that goes quiet
gets 421 4.4.2 and is closed, a message it left half-sent is not delivered, and the
server goes on serving. The daemon runs with IDLE_TIMEOUT patched to one second."""

import os
import sys
import time

import pytest

from tests.lmtp.lmtpsite import Client, Site
from tests.support import REPO

IDLE = 1
MSG = b"Subject: t\r\n\r\nbody\r\n"


class ShortIdleSite(Site):
    def argv(self):
        argv = super().argv()
        code = argv.index("-c") + 1
        argv[code] = ("import sys; sys.path.insert(0, sys.argv[1]); "
                      "from mailslot.lmtp import server; "
                      f"server.IDLE_TIMEOUT = {IDLE}; sys.exit(server.main(sys.argv[2:]))")
        return argv


@pytest.fixture(params=["one-process", "workers"])
def site(request):
    if os.geteuid() != 0:
        pytest.skip("runs the daemon as another uid (root needed)")
    extra = "lmtp_processes: 2\n" if request.param == "workers" else ""
    made = ShortIdleSite.create(extra=extra)
    made.start()
    yield made
    made.stop()
    made.cleanup()


def _closed_after(client):
    start = time.monotonic()
    reply = client.reply()
    waited = time.monotonic() - start
    with pytest.raises(EOFError):
        client.line()
    return reply, waited


def test_a_quiet_client_gets_421_and_is_closed(site):
    client = Client.unix(site.socket)
    client.hello()
    reply, waited = _closed_after(client)
    assert reply == "421 4.4.2 Timeout, closing connection"
    assert IDLE * 0.8 <= waited < IDLE + 10


def test_a_message_left_half_sent_is_not_delivered(site):
    client = Client.unix(site.socket)
    client.hello()
    client.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<alice@lmtp.test>\r\nDATA\r\n")
    assert client.replies(3)[-1] == "354 OK"
    client.send(b"Subject: half\r\n\r\nthe first half\r\n")
    reply, _ = _closed_after(client)
    assert reply == "421 4.4.2 Timeout, closing connection"
    assert site.maildir("alice") == []
    # The server goes on: the next client is served, every time within the limit.
    for _ in range(3):
        again = Client.unix(site.socket)
        again.hello()
        _, final = again.transaction("s@x", ["alice@lmtp.test"], MSG)
        assert final == ["250 2.0.0 <alice@lmtp.test> Saved"]
        again.close()
    assert len(site.maildir("alice")) == 3


def test_a_busy_client_is_not_timed_out(site):
    """The limit is per read, not per connection: a client that keeps talking for
    longer than it is served to the end."""
    client = Client.unix(site.socket)
    client.hello()
    deadline = time.monotonic() + IDLE * 2.5
    sent = 0
    while time.monotonic() < deadline:
        _, final = client.transaction("s@x", ["bob@lmtp.test"], MSG)
        assert final == ["250 2.0.0 <bob@lmtp.test> Saved"]
        sent += 1
        time.sleep(IDLE / 4)
    client.send(b"QUIT\r\n")
    assert client.reply().startswith("221")
    assert len(site.maildir("bob")) == sent
