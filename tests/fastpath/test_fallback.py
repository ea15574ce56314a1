"""The front falls back to the ordinary engine whenever a hand-off is not certain.

Each case delivers through mailslot-lda-front and checks the outcome (exit code,
the message whole in new/) and which path delivered (the log line's <handoff>
marker): no server, a stale socket, a server of another uid, a server that
refuses (other groups, a limit it cannot apply), a server that answers wrongly
or not at all; and what happens when the server or its worker is killed in the
middle of a delivery. The protocol answers come from fake_server.py, run as the
test user so that the front's own peer check passes.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.fastpath.conftest import wait_for
from tests.fastpath.helpers import MSG, Box
from tests.support import needs_root, run_as

from mailslot.handoff import protocol

pytestmark = needs_root
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def box(mail_users, front):
    b = Box(mail_users[0], front)
    yield b
    b.close()


def assert_ordinary(box, proc, count=1):
    assert proc.returncode == 0, proc.stderr
    assert box.read_new() == [MSG] * count
    handed, ordinary = box.log_counts()
    assert handed == 0 and ordinary == count, (handed, ordinary)


def test_handed_off_when_the_server_listens(box, start_server):
    start_server(box.user)
    proc = box.deliver()
    assert proc.returncode == 0, proc.stderr
    assert box.read_new() == [MSG]
    assert box.log_counts() == (1, 0)


def test_no_server_falls_back(box, front):
    shutil.rmtree(front.socket_dir(box.user.pw_uid), ignore_errors=True)
    assert_ordinary(box, box.deliver())


def test_stale_socket_falls_back_and_a_new_server_replaces_it(box, front, start_server):
    server = start_server(box.user)
    server.kill()                       # SIGKILL: the socket file stays behind
    assert os.path.exists(front.socket_for(box.user.pw_uid))
    assert_ordinary(box, box.deliver())
    start_server(box.user)              # replaces the stale socket
    assert box.deliver().returncode == 0
    assert box.log_counts() == (1, 1)


def test_server_of_another_uid_is_not_used(box, front, mail_users):
    # A server of another uid at our socket path that would answer "delivered" to
    # anything: the front's own SO_PEERCRED check must keep it from being asked.
    other = mail_users[1]
    path = front.make_socket_dir(box.user)
    os.chown(path, other.pw_uid, other.pw_gid)      # the other uid may bind here
    os.chmod(path, 0o755)
    try:
        proc, record = fake(front, box, "code:0", as_user=other, make_dir=False)
        os.chmod(front.socket_for(box.user.pw_uid), 0o666)   # and our uid may connect
        assert_ordinary(box, box.deliver())
        seen = read_record(proc, record)
        assert seen["frame"] == "" and seen["fds"] == "0"    # nothing was sent to it
    finally:
        front.make_socket_dir(box.user)


def fake(front, box, mode, as_user=None, make_dir=True):
    """fake_server.py as the box's user (or as_user) on the box's socket; returns
    (Popen, record path)."""
    user = as_user or box.user
    script = os.path.join(front.base, "fake_server.py")
    shutil.copy(os.path.join(HERE, "fake_server.py"), script)
    os.chmod(script, 0o644)
    if make_dir:
        front.make_socket_dir(box.user)
    record = os.path.join(user.pw_dir, "fake.record")
    proc = subprocess.Popen(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
         "--init-groups", "--", sys.executable, "-I", script,
         front.socket_for(box.user.pw_uid), mode, record],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"listening\n", proc.stderr.read()
    return proc, record


def read_record(proc, record):
    proc.wait(15)
    out = dict(line.split(" ", 1) for line in open(record).read().splitlines())
    return out


@pytest.mark.parametrize("mode", ["refuse", "close", "silent"])
def test_no_hand_off_before_ready_falls_back(box, front, mode):
    proc, record = fake(front, box, mode)
    started = time.monotonic()
    result = box.deliver()
    assert_ordinary(box, result)
    seen = read_record(proc, record)
    assert seen["fds"] == "4" and "go" not in seen    # no GO: stdin was never the server's
    if mode == "silent":
        assert time.monotonic() - started >= 2.0        # HANDSHAKE_TIMEOUT_MS=2000


def test_exit_code_comes_from_the_server(box, front):
    proc, record = fake(front, box, "code:67")
    result = box.deliver()
    assert result.returncode == 67 and box.new() == []
    assert read_record(proc, record)["go"] == protocol.GO.hex()


def test_server_gone_after_go_is_tempfail_never_a_second_delivery(box, front):
    proc, record = fake(front, box, "ready-close")
    result = box.deliver()
    assert result.returncode == 75
    assert b"hand-off server ended before the delivery finished" in result.stderr
    assert box.new() == []              # the front did not run the engine after GO
    read_record(proc, record)


def test_the_request_carries_argv_allowed_environment_limits(box, front):
    proc, record = fake(front, box, "refuse")
    env = {"TZ": "UTC", "LANG": "C.UTF-8", "MAILSLOT_DEBUG": "1", "FOO": "dropped",
           "SENDER": "dropped"}
    result = box.deliver("-m", "Lists", "-o", "hostname=a b", env=env,
                         prefix=["prlimit", "--fsize=4096:8192", "--nofile=100:200", "--"])
    # prlimit (as the user) lowers the limits, then execs the front.
    req = protocol.decode_request(bytes.fromhex(read_record(proc, record)["frame"]))
    assert req.argv[0].endswith(b"mailslot-lda-front")
    assert [a.decode() for a in req.argv[1:]] == ["-c", box.conf, "-m", "Lists", "-o",
                                                  "hostname=a b"]
    assert req.env == {"PATH": "/usr/bin:/bin", "USER": box.user.pw_name,
                       "HOME": box.user.pw_dir, "LOGNAME": box.user.pw_name, "TZ": "UTC",
                       "LANG": "C.UTF-8", "MAILSLOT_DEBUG": "1"}
    import resource
    assert req.limits[resource.RLIMIT_FSIZE] == (4096, 8192)
    assert req.limits[resource.RLIMIT_NOFILE] == (100, 200)
    assert result.returncode == 0       # refused: the engine delivered it


@pytest.mark.parametrize("argv, env", [
    (["-k"], {}),
    (["-ek"], {}),
    ([], {"MAILSLOT_RELAY_USER": "x"}),
])
def test_no_connection_for_k_or_the_relay(box, front, argv, env):
    proc, record = fake(front, box, "code:0")
    result = box.deliver(*argv, env=env)
    # The relay's variable makes the engine check a promise it was not given.
    assert result.returncode == (0 if not env else 77) or result.returncode == 75, result.stderr
    time.sleep(0.2)
    assert proc.poll() is None          # nobody connected
    proc.kill()
    proc.wait()


def test_other_groups_are_refused_by_the_server(box, start_server):
    server = start_server(box.user)
    proc = subprocess.run(
        ["setpriv", f"--reuid={box.user.pw_uid}", f"--regid={box.user.pw_gid}",
         "--groups=65534", "--"] + box.argv(), input=MSG, capture_output=True, cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": box.user.pw_dir, "USER": box.user.pw_name})
    assert_ordinary(box, proc)
    assert "refused a hand-off" in server.stop() and "peer groups differ" in server.rest


def test_limit_above_the_servers_hard_limit_falls_back(box, start_server):
    server = start_server(box.user, prefix=["prlimit", "--nofile=256:256", "--"])
    assert_ordinary(box, box.deliver())            # the client's hard NOFILE is higher
    proc = box.deliver(prefix=["prlimit", "--nofile=64:128", "--"])
    assert proc.returncode == 0, proc.stderr
    assert box.log_counts() == (1, 1)               # a lower one is applied: handed off
    assert "resource limit 7" in server.stop()      # RLIMIT_NOFILE, in the server's log


def test_server_refuses_a_client_of_another_uid(box, front, mail_users, start_server):
    server = start_server(box.user)
    os.chmod(front.socket_dir(box.user.pw_uid), 0o755)
    os.chmod(server.socket, 0o666)
    frame = protocol.encode_request(protocol.Request(
        0o22, [b"mailslot-lda"], {"PATH": "/bin"}, [(0, protocol.INFINITY)] * 16))
    code = ("import socket, sys, os\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "s.connect(sys.argv[1])\n"
            "fds = [0, 1, 2, os.open('/', os.O_PATH)]\n"
            "try:\n"
            "    socket.send_fds(s, [bytes.fromhex(sys.argv[2])], fds)\n"
            "except OSError:\n"
            "    pass    # refused before the frame was read: the answer is there\n"
            "print(s.recv(1).decode() or 'EOF')\n")
    proc = run_as(mail_users[1], [sys.executable, "-I", "-c", code, server.socket,
                                  frame.hex()])
    assert proc.stdout == b"R\n", proc.stderr
    front.make_socket_dir(box.user)


def slow_delivery(box):
    """Start the front with a stdin we feed by hand; returns (Popen, writer)."""
    argv = ["setpriv", f"--reuid={box.user.pw_uid}", f"--regid={box.user.pw_gid}",
            "--init-groups", "--"] + box.argv()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd="/",
                            env={"PATH": "/usr/bin:/bin", "USER": box.user.pw_name,
                                 "HOME": box.user.pw_dir, "LOGNAME": box.user.pw_name})
    return proc


def test_server_killed_mid_delivery_the_worker_finishes(box, start_server):
    server = start_server(box.user)
    proc = slow_delivery(box)
    proc.stdin.write(MSG[:40])
    proc.stdin.flush()
    assert wait_for(lambda: server.workers_reading(proc.stdin))
    server.kill()                       # the server (and its spare workers), not this worker
    proc.stdin.write(MSG[40:])
    proc.stdin.close()
    assert proc.wait(30) == 0, proc.stderr.read()
    assert box.read_new() == [MSG] and box.log_counts() == (1, 0)


def test_a_new_server_starts_while_a_killed_servers_worker_still_delivers(box, front,
                                                                         start_server):
    # The busy worker still holds the old listening socket; the new server must
    # not mistake it for a live server (the lock, not a connect(), tells).
    server = start_server(box.user)
    proc = slow_delivery(box)
    proc.stdin.write(MSG[:40])
    proc.stdin.flush()
    assert wait_for(lambda: server.workers_reading(proc.stdin))
    server.kill()
    successor = start_server(box.user)
    assert box.deliver(input=MSG).returncode == 0          # handed to the successor
    proc.stdin.write(MSG[40:])
    proc.stdin.close()
    assert proc.wait(30) == 0, proc.stderr.read()
    assert box.read_new() == [MSG, MSG] and box.log_counts() == (2, 0)
    assert "not reused" not in successor.stop()


def test_a_second_server_does_not_start(box, front, start_server):
    start_server(box.user)
    proc = run_as(box.user, [front.server_entry, "--socket",
                             front.socket_for(box.user.pw_uid)])
    assert proc.returncode == 75 and b"another server is listening" in proc.stderr
    assert box.deliver().returncode == 0 and box.log_counts() == (1, 0)


def test_worker_killed_mid_delivery_is_tempfail_and_files_nothing(box, start_server):
    server = start_server(box.user)
    proc = slow_delivery(box)
    proc.stdin.write(MSG[:40])
    proc.stdin.flush()
    assert wait_for(lambda: server.workers_reading(proc.stdin))
    (worker,) = server.workers_reading(proc.stdin)
    # Killed before GO the front would run the engine itself (and deliver): wait
    # until the worker is past GO, blocked reading the message from fd 0.
    assert wait_for(lambda: blocked_reading_fd0(worker))
    os.kill(worker, signal.SIGKILL)
    try:
        proc.stdin.write(MSG[40:])
        proc.stdin.close()
    except BrokenPipeError:
        pass                # the front saw its worker end and exited: no reader left
    assert proc.wait(30) == 75
    assert b"not acknowledged" in proc.stderr.read()
    assert box.new() == []


def blocked_reading_fd0(pid):
    """The process sits in read(0, ...) (x86-64 and arm64 syscall numbers)."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
    except OSError:
        return False
    return len(fields) > 1 and fields[0] in ("0", "63") and int(fields[1], 16) == 0


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_spare_workers_do_not_outlive_the_server(box, start_server, how):
    server = start_server(box.user)
    assert wait_for(lambda: len(server.workers()) >= 2)    # SPARE_WORKERS wait in accept()
    spares = server.workers()
    server.stop() if how == "stop" else server.kill()
    assert wait_for(lambda: not any(_alive(pid) for pid in spares)), spares
