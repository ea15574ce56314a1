"""The LMTP benchmark's load generators (bench/lmtp_load.c and its Python twin) against a
real mailslot-lmtpd.

Why this exists: `bench/run_bench.py --lmtp` believes the generator's count of 250s
and divides by it; a generator that miscounted, mangled the message or let a failed
transaction pass would make every figure of docs/benchmarks.md's LMTP section wrong,
and the bench runs only by hand. So: each generator compiles (C) and drives a real
server for about a second; the files in the Maildirs are exactly the acknowledged
count, each the message as sent (a dot-stuffed line unstuffed again); a refused
recipient or a rejected message fails the run loudly instead of being counted.
"""

import importlib.util
import os
import socket
import threading

import pytest

from tests.lmtp.lmtpsite import Site
from tests.support import REPO, needs_root

_spec = importlib.util.spec_from_file_location("lmtp_load",
                                               os.path.join(REPO, "bench", "lmtp_load.py"))
lmtp_load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lmtp_load)

# A line starting with "." must be stuffed on the wire and come out whole in the file.
MESSAGE = (b"From: a@example.org\nSubject: load\n\nfirst line\n.a line with a dot\n"
           b"..two dots\nlast line\n")
# More than a unix socket's send buffer (about 208 KiB): the content goes out in
# several writes, the C generator waiting for EPOLLOUT between them.
BIG = MESSAGE + b"a body line of the big message, and then the next one\n" * 20000
GENERATORS = ["c", "python"]

pytestmark = needs_root


@pytest.fixture(scope="module")
def site():
    s = Site.create(uid_start=4760, size_limit="4M")
    s.start()
    yield s
    s.stop()
    s.cleanup()


@pytest.fixture(params=GENERATORS)
def generator(request, tmp_path):
    gen = lmtp_load.Generator.create(str(tmp_path), request.param)
    if gen.kind != request.param:
        pytest.skip("no C compiler")
    return gen


@pytest.mark.parametrize("message", [MESSAGE, BIG], ids=["small", "1MB"])
def test_every_acknowledged_message_is_a_delivered_file(site, generator, tmp_path,
                                                        message):
    before = {user: set(site.maildir(user)) for user in ("alice", "bob")}
    got = generator.run(site.socket, 3, 1.0, message,
                        ["alice@lmtp.test", "bob@lmtp.test"], str(tmp_path))
    new = {user: sorted(set(site.maildir(user)) - before[user]) for user in before}
    files = new["alice"] + new["bob"]
    assert got["messages"] > 0
    assert len(files) == got["messages"]
    # Connections 0 and 2 deliver to alice, 1 to bob: both users got mail.
    assert new["alice"] and new["bob"]
    assert 0.9 < got["elapsed"] < 30
    assert 0 < got["cpu"] < got["elapsed"] + 5
    for path in files[:5] + files[-5:]:
        with open(path, "rb") as f:
            assert f.read().endswith(message.split(b"\n\n", 1)[1]), path


@pytest.mark.parametrize("rcpt", [
    "nobody@lmtp.test",    # RCPT refused: unknown user
    "carol@lmtp.test",     # the message refused after DATA (Sieve ereject)
])
def test_a_refused_transaction_fails_the_run(site, generator, tmp_path, rcpt):
    # The C one prints  got "550 ...", the Python one  got b'550 ...'
    with pytest.raises(SystemExit, match=r"LMTP load failed.*expected 250.*got b?[\"']5\d\d"):
        generator.run(site.socket, 2, 0.5, MESSAGE, ["alice@lmtp.test", rcpt],
                      str(tmp_path))


def test_a_closed_connection_fails_the_run(generator, tmp_path):
    """A socket whose server closes at once (no greeting)."""
    path = str(tmp_path / "sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(4)

    def close_all():
        conn, _ = server.accept()
        conn.close()
    t = threading.Thread(target=close_all, daemon=True)
    t.start()
    with pytest.raises(SystemExit, match="LMTP load failed.*closed"):
        generator.run(path, 1, 0.5, MESSAGE, ["alice@lmtp.test"], str(tmp_path))
    server.close()


def test_without_a_compiler_the_python_generator_runs_with_a_warning(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))      # no cc, no gcc
    gen = lmtp_load.Generator.create(str(tmp_path), "c")
    assert gen.kind == "python"
    assert "WARNING: no C compiler" in capsys.readouterr().err
