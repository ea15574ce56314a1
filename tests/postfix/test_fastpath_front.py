"""The fast path under real Postfix: pipe(8) runs mailslot-lda-front as the vmail
user, with mailslot-handoffd of that user listening, and then without it.

The private instance's recipe-3 line (master.cf-vmail, see postfixtest.py) is
added a second time as the service fastslot, with the front in place of
mailslot-lda; transport_maps sends one address, vm1+fast@, to it (the other
tests' addresses keep their routes). The front is built as the test suites build
it (helper_c, HANDOFF_DIR in this test's directory, ENGINE_PATH the installed
engine). What is checked: Postfix says sent, the message is in the folder -m
names, and mailslot's log line says which path delivered it -- <handoff> with
the server, the ordinary line once it is stopped; and that deliveries Postfix
makes one after another are served by one reused worker: pipe(8) gives the
front its master's limits (here none on the file size; a master with one gets a
server with the same hard limit, as the unit's LimitFSIZE= would give it).
"""
import os
import re
import shutil
import signal
import subprocess

import pytest

from tests.postfix.postfixtest import VMAIL_SERVICE, _run
from tests.support import REPO, world_tempdir

SERVICE = "fastslot"
ADDRESS_EXTENSION = "fast"
HANDOFF = re.compile(r"lda\(([^)]*)\)<(\d+)><handoff>: Info: msgid=<(fast\d+)@")
ORDINARY = re.compile(r"lda\(([^)]*)\)<(\d+)>: Info: msgid=<(fast\d+)@")


@pytest.fixture
def fastslot(postfix):
    """The front built for this test, the fastslot service and its route; removed
    again afterwards."""
    base = world_tempdir("mslt-pf-front-")
    handoff = os.path.join(base, "handoff")
    os.mkdir(handoff, 0o755)
    out = os.path.join(base, "out")
    engine = os.path.join(postfix.libdir, "mailslot-lda")
    front = os.path.join(out, "mailslot-lda-front")
    _run(["make", "-s", "-C", os.path.join(REPO, "helper_c"), f"OUT={out}",
          f"HANDOFF_DIR={handoff}", f"ENGINE_PATH={engine}", front])
    master = os.path.join(postfix.pf_etc, "master.cf")
    transport = os.path.join(postfix.pf_etc, "transport")
    saved = {path: open(path).read() for path in (master, transport)}
    line = postfix.example_vmail_line()
    assert line.startswith(VMAIL_SERVICE + " ") and f"{engine} " in line, line
    line = SERVICE + line[len(VMAIL_SERVICE):]
    with open(master, "a") as f:
        f.write(line.replace(f"{engine} ", f"{front} ").rstrip("\n") + "\n")
    vm = postfix.vmail
    domain = vm.address.split("@")[1]
    with open(transport, "a") as f:
        f.write(f"{vm.name}+{ADDRESS_EXTENSION}@{domain} {SERVICE}:\n")
    postfix.postfix("reload")
    yield handoff, front
    for path, text in saved.items():
        with open(path, "w") as f:
            f.write(text)
    postfix.postfix("reload")
    shutil.rmtree(base, ignore_errors=True)


def start_server(postfix, handoff):
    """mailslot-handoffd as the vmail user, its groups as pipe(8) sets them (the
    primary group only), its hard limits those Postfix gives its children."""
    user = postfix.vmail_user
    directory = os.path.join(handoff, str(user.pw_uid))
    os.makedirs(directory, exist_ok=True)
    os.chown(directory, user.pw_uid, user.pw_gid)
    os.chmod(directory, 0o700)
    limits = []
    fsize = postfix_file_limit(postfix)
    if fsize is not None:
        limits = ["prlimit", f"--fsize={fsize}:{fsize}", "--"]
    proc = subprocess.Popen(
        limits + ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                  f"--groups={user.pw_gid}", "--",
                  os.path.join(postfix.libdir, "mailslot-handoffd"), "-c", postfix.settings,
                  "--socket", os.path.join(directory, "socket")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/",
        env={"PATH": "/usr/bin:/bin"})
    line = proc.stderr.readline().decode()
    assert "listening on" in line, line + proc.stderr.read().decode()
    return proc


def postfix_file_limit(postfix):
    """The RLIMIT_FSIZE Postfix's master sets for its children (soft = hard), in
    bytes, or None when it sets none: read from the running master."""
    pid = postfix.master_pid()
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max file size"):
                soft, hard = line.split()[3:5]
                return None if hard == "unlimited" else int(hard)
    return None


def stop_server(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    rest = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    return rest


def deliveries(postfix):
    """[(path, pid, msgid)] of the fastN messages in mailslot's log, in order."""
    log = os.path.join(postfix.vmail.home, "mailslot.log")
    text = open(log, errors="replace").read() if os.path.exists(log) else ""
    found = []
    for line in text.splitlines():
        for path, regex in (("handoff", HANDOFF), ("ordinary", ORDINARY)):
            m = regex.search(line)
            if m:
                found.append((path, int(m.group(2)), m.group(3)))
    return found


def send(postfix, n):
    vm = postfix.vmail
    domain = vm.address.split("@")[1]
    msg = (b"From: sender@example.net\nTo: vm1\nSubject: fast path\n"
           b"Message-ID: <fast%d@example.net>\nX-Test-Case: fast-%d\n\nBody %d.\n" % (n, n, n))
    postfix.send("sender@example.net", [f"{vm.name}+{ADDRESS_EXTENSION}@{domain}"], msg)
    found = postfix.wait_for_message(os.path.join(vm.home, "Maildir", "." + ADDRESS_EXTENSION),
                                     b"X-Test-Case: fast-%d\n" % n)
    assert len(found) == 1, postfix.log()[-3000:]
    assert postfix.wait_for_log(rf"to=<{vm.name}\+{ADDRESS_EXTENSION}@{re.escape(domain)}>"
                                rf".*relay={SERVICE},.*status=sent")


def test_front_under_postfix_hands_off_and_the_log_says_which_path(postfix, fastslot):
    handoff, front = fastslot
    server = start_server(postfix, handoff)
    try:
        for n in (1, 2, 3):
            send(postfix, n)
    finally:
        rest = stop_server(server)
    send(postfix, 4)                      # no server: the front runs the engine
    seen = deliveries(postfix)
    paths = {msgid: (path, pid) for path, pid, msgid in seen}
    assert [paths[f"fast{n}"][0] for n in (1, 2, 3, 4)] == \
        ["handoff", "handoff", "handoff", "ordinary"], seen
    # One worker served all three: Postfix's pipe delivered them one after another.
    assert len({paths[f"fast{n}"][1] for n in (1, 2, 3)}) == 1, (seen, rest)
    assert "not reused" not in rest, rest
    assert "refused" not in rest, rest
