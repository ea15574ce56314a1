"""Workers that serve more than one hand-off (handoff_worker_max_use): how many,
when they are replaced, and that nothing of one delivery changes the next one's.

Which worker delivered is read from the log line's pid (lda(user)<pid><handoff>).
A server started with --max-workers 1 has exactly one worker at a time, so that
consecutive deliveries go to the same worker until it is replaced.
"""

import os
import re
import signal
import subprocess
import time

import pytest

from tests.fastpath.conftest import wait_for
from tests.fastpath.helpers import MSG, Box
from tests.support import needs_root

pytestmark = needs_root
PID = re.compile(r"lda\([^)]*\)<(\d+)><handoff>: ")


@pytest.fixture
def worker_max_use():
    """Not parametrized here: each test names the max_use it is about."""
    return "default"


@pytest.fixture
def box(mail_users, front):
    b = Box(mail_users[0], front)
    yield b
    b.close()


def pids(box):
    """The worker pid of each handed-off delivery, in order."""
    if not os.path.exists(box.log):
        return []
    return [int(p) for p in PID.findall(open(box.log, errors="replace").read())]


def message(n):
    return MSG.replace(b"<fp1@example.org>", b"<fp%d@example.org>" % n)


def deliver_ok(box, n, *args):
    proc = box.deliver(*args, input=message(n))
    assert proc.returncode == 0, proc.stderr
    return proc


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("max_use, expected", [
    (1, [0, 1, 2, 3, 4, 5, 6]),
    (3, [0, 0, 0, 1, 1, 1, 2]),
    (100, [0, 0, 0, 0, 0, 0, 0]),
])
def test_a_worker_serves_max_use_hand_offs_then_is_replaced(box, start_server, max_use,
                                                             expected):
    start_server(box.user, max_use=max_use, extra_argv=["--max-workers", "1"])
    for n in range(7):
        deliver_ok(box, n)
    seen = pids(box)
    order = {}
    assert [order.setdefault(pid, len(order)) for pid in seen] == expected, seen
    assert sorted(box.read_new()) == sorted(message(n) for n in range(7))


def test_max_use_is_read_from_the_settings_file(box, front, start_server):
    conf = os.path.join(box.confdir, "handoffd.yaml")
    with open(conf, "w") as f:
        f.write("handoff_worker_max_use: 2\n")
    os.chmod(conf, 0o644)
    server = start_server(box.user, max_use="default",
                          extra_argv=["-c", conf, "--max-workers", "1"])
    for n in range(5):
        deliver_ok(box, n)
    seen = pids(box)
    assert seen[0] == seen[1] != seen[2] == seen[3] != seen[4], seen
    assert "serve up to 2 hand-offs" in server.banner


@pytest.mark.parametrize("text", ["handoff_worker_max_use: 0\n",
                                  "handoff_worker_max_use: many\n",
                                  "handoff_worker_max_idle: 0\n"])
def test_a_bad_setting_keeps_the_server_from_starting(box, front, text):
    conf = os.path.join(box.confdir, "handoffd.yaml")
    with open(conf, "w") as f:
        f.write(text)
    os.chmod(conf, 0o644)
    front.make_socket_dir(box.user)
    proc = subprocess.run(
        ["setpriv", f"--reuid={box.user.pw_uid}", f"--regid={box.user.pw_gid}",
         "--init-groups", "--", front.server_entry, "-c", conf, "--socket",
         front.socket_for(box.user.pw_uid)], capture_output=True, timeout=30, cwd="/")
    assert proc.returncode == 75, proc.stderr
    assert b"handoff_worker_max" in proc.stderr
    deliver_ok(box, 1)                      # nobody listens: the ordinary path
    assert box.log_counts() == (0, 1)


def test_a_worker_that_served_exits_after_max_idle(box, start_server):
    server = start_server(box.user, max_use=100,
                          extra_argv=["--max-workers", "1", "--max-idle", "1"])
    deliver_ok(box, 1)
    (first,) = pids(box)
    assert wait_for(lambda: not alive(first), 10)
    deliver_ok(box, 2)
    assert pids(box)[1] != first
    assert "idle for 1 s after 1 hand-offs" in server.stop()


def test_settings_edit_is_seen_by_the_next_delivery_on_the_same_worker(box, start_server):
    # The settings file and its cache directory belong to the user, so the first
    # delivery writes the parsed-settings cache beside it. The edit keeps the
    # size and puts the modification time back: the cache key must still change.
    os.chown(box.confdir, box.user.pw_uid, box.user.pw_gid)
    start_server(box.user, max_use=100, extra_argv=["--max-workers", "1"])
    deliver_ok(box, 1)
    assert os.path.exists(os.path.join(box.confdir, ".mailslot.yaml.cache"))
    st = os.stat(box.conf)
    text = open(box.conf).read()
    with open(box.conf, "w") as f:
        f.write(text.replace("~/Maildir", "~/Mailbox"))
    os.utime(box.conf, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(box.conf).st_size == st.st_size
    deliver_ok(box, 2)
    first, second = pids(box)
    assert first == second                  # the same worker
    assert box.read_new() == [message(1)]
    other = os.path.join(box.user.pw_dir, "Mailbox", "new")
    assert [open(os.path.join(other, n), "rb").read() for n in os.listdir(other)] \
        == [message(2)]


def test_sieve_and_userdb_edits_are_seen_by_the_next_delivery(box, start_server):
    # A passwd-file userdb whose entry names the Sieve script; both are edited
    # between two deliveries that the same worker serves.
    user = box.user
    users = os.path.join(box.confdir, "users")

    def write_users(script):
        with open(users, "w") as f:
            f.write(f"{user.pw_name}::{user.pw_uid}:{user.pw_gid}::{user.pw_dir}::"
                    f"userdb_sieve=file:~/sieve;active=~/{script}\n")
        os.chmod(users, 0o644)

    def write_script(name, folder):
        path = os.path.join(user.pw_dir, name)
        with open(path, "w") as f:
            f.write(f'require ["fileinto", "mailbox"];\nfileinto :create "{folder}";\n')
        os.chown(path, user.pw_uid, user.pw_gid)

    with open(box.conf, "a") as f:
        f.write(f"userdb:\n  - driver: passwd-file\n    args: {users}\n")
    write_users("one.sieve")
    write_script("one.sieve", "A1")
    write_script("two.sieve", "B1")
    start_server(user, max_use=100, extra_argv=["--max-workers", "1"])
    deliver_ok(box, 1, "-d", user.pw_name)
    time.sleep(0.01)
    write_script("one.sieve", "A2")         # the script edited
    deliver_ok(box, 2, "-d", user.pw_name)
    write_users("two.sieve")                # the userdb entry edited
    deliver_ok(box, 3, "-d", user.pw_name)
    seen = pids(box)
    assert len(set(seen)) == 1 and box.log_counts()[1] == 0, seen
    for folder, n in (("A1", 1), ("A2", 2), ("B1", 3)):
        new = os.path.join(box.maildir, f".{folder}", "new")
        assert [open(os.path.join(new, name), "rb").read() for name in os.listdir(new)] \
            == [message(n)], folder


def test_a_worker_is_reused_after_failed_deliveries(box, start_server):
    sieve = os.path.join(box.user.pw_dir, ".dovecot.sieve")
    start_server(box.user, max_use=100, extra_argv=["--max-workers", "1"])
    deliver_ok(box, 1)
    tempfail = box.deliver("-p", "/nonexistent/message")                  # 75
    assert tempfail.returncode == 75, tempfail.stderr
    with open(sieve, "w") as f:
        f.write('require "reject";\nreject "not here";\n')
    os.chown(sieve, box.user.pw_uid, box.user.pw_gid)
    refused = box.deliver("-e", input=message(2))                          # 77
    assert refused.returncode == 77, refused.stderr
    assert b"not here" in refused.stderr
    os.unlink(sieve)
    unknown = box.deliver("-d", "mslt-nobody-here", input=message(3))      # 67
    assert unknown.returncode == 67, unknown.stderr
    deliver_ok(box, 4)
    assert box.read_new() == [message(1), message(4)] or \
        sorted(box.read_new()) == sorted([message(1), message(4)])
    log = open(box.log, errors="replace").read()
    workers = set(int(p) for p in re.findall(r"lda\([^)]*\)<(\d+)><handoff>", log))
    assert len(workers) == 1, log           # every one of them on the same worker


def slow_front(box, n):
    argv = ["setpriv", f"--reuid={box.user.pw_uid}", f"--regid={box.user.pw_gid}",
            "--init-groups", "--"] + box.argv()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd="/",
                            env={"PATH": "/usr/bin:/bin", "USER": box.user.pw_name,
                                 "HOME": box.user.pw_dir})
    proc.stdin.write(message(n)[:40])
    proc.stdin.flush()
    return proc


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
def test_a_reused_worker_delivers_after_a_killed_clients_delivery(box, start_server,
                                                                  signum):
    server = start_server(box.user, max_use=100, extra_argv=["--max-workers", "2"])
    deliver_ok(box, 1)                          # a worker that has served: warm
    (warm,) = pids(box)
    slow = slow_front(box, 9)
    assert wait_for(lambda: server.workers_reading(slow.stdin))
    (victim,) = server.workers_reading(slow.stdin)
    deliver_ok(box, 2)                          # while the other worker is busy
    slow.send_signal(signum)                    # the MTA kills that client
    slow.wait(30)
    try:
        slow.stdin.write(message(9)[40:])
        slow.stdin.close()
    except BrokenPipeError:
        pass
    assert wait_for(lambda: not alive(victim), 15)   # its worker was stopped
    for n in (3, 4, 5):
        deliver_ok(box, n)
    seen = pids(box)
    log = server.stop()
    assert "not reused" not in log, log
    assert seen[2:].count(seen[1]) >= 1 or len(seen) - len(set(seen)) >= 2, seen
    assert sorted(box.read_new()) == sorted(message(n) for n in (1, 2, 3, 4, 5))
    assert box.tmp() == [] or all(n for n in box.tmp())


@pytest.mark.parametrize("limit, reused", [
    ("--fsize=1000000:unlimited", True),        # a soft limit: put back afterwards
    ("--fsize=1000000:2000000", False),         # a hard limit lowered: never again
    ("--cpu=30:unlimited", True),
])
def test_a_lowered_hard_limit_ends_the_worker_after_its_delivery(box, start_server, limit,
                                                                  reused):
    server = start_server(box.user, max_use=100, extra_argv=["--max-workers", "1"])
    deliver_ok(box, 1)
    proc = box.deliver(input=message(2), prefix=["prlimit", limit, "--"])
    assert proc.returncode == 0, proc.stderr
    deliver_ok(box, 3)
    first, second, third = pids(box)
    assert first == second
    assert (second == third) == reused, pids(box)
    assert box.log_counts() == (3, 0)
    server.stop()


def test_a_worker_is_reused_after_a_delivery_from_a_file(box, start_server):
    # -p: the engine opens the file itself; its descriptor must not outlive the
    # delivery (it did: the worker then saw a leaked fd and was not reused).
    src = os.path.join(box.user.pw_dir, "incoming.eml")
    with open(src, "wb") as f:
        f.write(message(1))
    os.chown(src, box.user.pw_uid, box.user.pw_gid)
    server = start_server(box.user, max_use=100, extra_argv=["--max-workers", "1"])
    proc = box.deliver("-p", src, input=b"")
    assert proc.returncode == 0, proc.stderr
    deliver_ok(box, 2)
    first, second = pids(box)
    assert first == second, server.stop()
    assert "not reused" not in server.stop()


def test_each_delivery_has_its_clients_time_zone(box, start_server):
    # The log's time stamps are local time: the same worker, three clients with
    # three TZ values, each line in its own client's zone (the C library reads TZ
    # once unless told again: the worker calls tzset for each hand-off).
    start_server(box.user, max_use=100, extra_argv=["--max-workers", "1"])
    zones = ["Etc/GMT-9", "Etc/GMT+5", "Etc/GMT-9"]         # UTC+9, UTC-5, UTC+9
    for n, zone in enumerate(zones):
        proc = box.deliver(input=message(n), env={"TZ": zone})
        assert proc.returncode == 0, proc.stderr
    assert len(set(pids(box))) == 1
    minutes = [int(t[0]) * 60 + int(t[1]) for t in
               (line.split()[2].split(":") for line in open(box.log)
                if "<handoff>: Info: msgid=" in line)]
    assert len(minutes) == 3
    # +9 and -5 are 14 hours apart (mod 24), whatever the clock says (a minute of
    # slack: the deliveries are not at the same instant).
    assert abs((minutes[0] - minutes[1]) % 1440 - 14 * 60) <= 1, minutes
    assert (minutes[2] - minutes[0]) % 1440 in (0, 1, 1439), minutes
