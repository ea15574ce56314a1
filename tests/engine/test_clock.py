"""One injected clock dates a whole delivery: the log line and the Maildir name.

cli.deliver_pipe(opts, clock) runs as an ordinary user (setpriv) in a child whose clock is
tests.support.FIXED_TIME (a one-digit day), TZ=UTC: the log's stamp and the new
file's <sec>.M<usec> name come from it, not from the day the test runs.
"""
import os
import re

from tests.support import FIXED_TIME, REPO, needs_root, run_as, world_tempdir

pytestmark = needs_root

CHILD = r"""
import sys
sys.path.insert(0, PYSIDE)
from mailslot.cli import deliver_pipe, parse_args
sys.exit(deliver_pipe(parse_args(sys.argv[1:]), clock=lambda: FIXED))
"""


def test_log_and_maildir_name_use_the_injected_clock(mail_users):
    user = mail_users[0]
    home = user.pw_dir
    for entry in ("Maildir", "clock.log"):
        path = os.path.join(home, entry)
        if os.path.isdir(path):
            import shutil
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.unlink(path)
    confdir = world_tempdir("mailslot-clock-")
    conf = os.path.join(confdir, "mailslot.yaml")
    with open(conf, "w") as f:
        f.write(f"mail_location: maildir:~/Maildir\nlog_path: {home}/clock.log\n"
                "first_valid_uid: 100\n")
    os.chmod(conf, 0o644)
    code = CHILD.replace("PYSIDE", repr(os.path.join(REPO, "pyside"))) \
                .replace("FIXED", repr(FIXED_TIME))
    proc = run_as(user, ["/usr/bin/python3", "-I", "-c", code, "-c", conf, "-f", "s@example.org"],
                  input=b"Subject: clock\nMessage-ID: <c@example.org>\n\nx\n", env={"TZ": "UTC"})
    assert proc.returncode == 0, proc.stderr
    (name,) = os.listdir(os.path.join(home, "Maildir", "new"))
    assert name.startswith(f"{int(FIXED_TIME)}.M250000P"), name
    log = open(os.path.join(home, "clock.log")).read()
    # Dovecot's default log_timestamp "%b %d %H:%M:%S ": the day zero-padded.
    assert re.match(r"Mar 05 07:08:09 lda\(" + re.escape(user.pw_name) + r"\)<\d+>: Info: msgid=<c@example.org>: "
                    r"saved mail to INBOX\n$", log), log


def test_sieve_currentdate_is_the_deliverys_clock(mail_users):
    # currentdate :zone "+0000" compares with the injected time, not today's.
    user = mail_users[1]
    home = user.pw_dir
    import shutil
    for entry in os.listdir(home):
        path = os.path.join(home, entry)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) \
            else os.unlink(path)
    with open(os.path.join(home, ".dovecot.sieve"), "w") as f:
        f.write('require ["date", "fileinto", "relational"];\n'
                'if currentdate :zone "+0000" :is "date" "2026-03-05" { fileinto "fixed"; }\n'
                'elsif currentdate :zone "+0000" :value "ge" "year" "2000" '
                '{ fileinto "today"; }\n')
    os.chown(os.path.join(home, ".dovecot.sieve"), user.pw_uid, user.pw_gid)
    confdir = world_tempdir("mailslot-clock-")
    conf = os.path.join(confdir, "mailslot.yaml")
    with open(conf, "w") as f:
        f.write(f"mail_location: maildir:~/Maildir\nlog_path: {home}/clock.log\n"
                "first_valid_uid: 100\n")
    os.chmod(conf, 0o644)
    code = CHILD.replace("PYSIDE", repr(os.path.join(REPO, "pyside"))) \
                .replace("FIXED", repr(FIXED_TIME))
    proc = run_as(user, ["/usr/bin/python3", "-I", "-c", code, "-c", conf],
                  input=b"Subject: when\n\nx\n", env={"TZ": "UTC"})
    assert proc.returncode == 0, proc.stderr
    assert len(os.listdir(os.path.join(home, "Maildir", ".fixed", "new"))) == 1, \
        open(os.path.join(home, "clock.log")).read()
    assert not os.path.exists(os.path.join(home, "Maildir", ".today"))
