"""lmtp/threads.py: the server's thread pools (in place of ThreadPoolExecutor)."""

import os
import subprocess
import sys
import threading
import time

import pytest

from mailslot.lmtp.threads import Pool

PYSIDE = os.path.join(os.path.dirname(__file__), "..", "..", "pyside")


def test_results_in_order_side_by_side():
    """map() runs the calls at the same time (all four wait for each other here) and
    returns their values in the order given."""
    pool = Pool(4, "t")
    barrier = threading.Barrier(4, timeout=10)

    def call(i, j):
        barrier.wait()
        return i * j
    assert pool.map(call, [1, 2, 3, 4], [10, 20, 30, 40]) == [10, 40, 90, 160]
    pool.shutdown()


def test_an_error_is_raised_by_result_and_the_thread_lives_on():
    pool = Pool(1, "t")
    failing = pool.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result()
    with pytest.raises(ZeroDivisionError):
        failing.result()                    # asked again: the same answer
    assert pool.submit(lambda: "next").result() == "next"
    assert len(pool._threads) == 1
    pool.shutdown()


@pytest.mark.parametrize("size, calls", [(1, 5), (3, 10), (16, 40)])
def test_never_more_threads_than_its_size_and_idle_ones_reused(size, calls):
    """Up to `size` calls run at once, never more; a pool whose calls come one at a
    time keeps one thread."""
    pool = Pool(size, "t")
    running, most = [0], [0]
    lock = threading.Lock()

    def call():
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
    tasks = [pool.submit(call) for _ in range(calls)]
    for task in tasks:
        task.result()
    assert most[0] <= size
    assert len(pool._threads) <= size
    pool.shutdown()
    serial = Pool(size, "s")
    for _ in range(5):
        serial.submit(time.sleep, 0.001).result()
        time.sleep(0.01)                    # the thread is idle again
    assert len(serial._threads) == 1
    serial.shutdown()


def test_shutdown_runs_what_was_submitted_then_ends_the_threads():
    pool = Pool(2, "t")
    done = []
    for i in range(6):
        pool.submit(lambda i=i: (time.sleep(0.01), done.append(i)))
    pool.shutdown()
    assert sorted(done) == list(range(6))
    assert not any(t.is_alive() for t in pool._threads)


RUN_SERVER = """
import os, signal, sys, threading
sys.path.insert(0, sys.argv[1])
from mailslot.lmtp.server import Server, listen_sockets
server = Server(sys.argv[2], log=lambda text: None)
sockets = listen_sockets(server.backend.base["lmtp_listen"])
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
server.run(sockets)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("logging", "concurrent", "queue")))
"""


def test_the_server_loads_no_logging_package(tmp_path):
    """What the pools are for: mailslot-lmtpd running (its pools made, then shut
    down by SIGTERM) has loaded neither concurrent.futures nor logging (1.6 MiB of
    each worker's memory)."""
    (tmp_path / "users").write_text("")
    conf = tmp_path / "mailslot.yaml"
    conf.write_text(f"mail_location: maildir:~/Maildir\nlog_path: {tmp_path}/log\n"
                    f"lmtp_listen: [\"unix:{tmp_path}/lmtp\"]\nuserdb:\n"
                    f"  - driver: passwd-file\n    args: {tmp_path}/users\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", RUN_SERVER, PYSIDE, str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
