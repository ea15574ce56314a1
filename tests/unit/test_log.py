"""The delivery log: Dovecot's line shape, file/stderr/syslog targets, failures, injection."""

import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from mailslot import log as logmod
from mailslot.errors import EX_TEMPFAIL, ConfigError, LogError, exit_code_for
from mailslot.log import DeliveryLog, check_log_format, sanitize
from tests.support import free_uid

HERE = os.path.dirname(os.path.abspath(__file__))
PYSIDE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "pyside")
DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="runs code as another uid (root needed)")

# Dovecot's default log_timestamp "%b %d %H:%M:%S " in the C locale.
STAMP = r"[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d "
# The injected clock: a one-digit day, where file stamps (%d) pad with a zero and
# syslog stamps (RFC 3164) with a space. 2026-12-04 18:27:11 UTC.
FIXED_CLOCK = 1796408831


def make_log(tmp_path, **overrides):
    args = dict(user="bob", log_path=str(tmp_path / "err.log"),
                info_log_path=str(tmp_path / "info.log"), syslog_facility="mail",
                deliver_log_format=logmod.DEFAULT_DELIVER_LOG_FORMAT)
    args.update(overrides)
    return DeliveryLog(**args)


def lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines(keepends=True)


def test_file_line_has_dovecots_shape(tmp_path):
    with make_log(tmp_path) as log:
        log.delivered({"msgid": "<abc@example.org>"}, "saved mail to INBOX")
    (line,) = lines(tmp_path / "info.log")
    assert re.fullmatch(STAMP + r"lda\(bob\)<%d>: Info: msgid=<abc@example.org>: "
                        r"saved mail to INBOX\n" % os.getpid(), line)


def test_levels_split_between_log_path_and_info_log_path(tmp_path):
    with make_log(tmp_path) as log:
        log.info("one")
        log.warning("two")
        log.error("three")
    assert [l.split(": ", 1)[1] for l in lines(tmp_path / "info.log")] == ["Info: one\n"]
    assert [l.split(": ", 1)[1] for l in lines(tmp_path / "err.log")] == [
        "Warning: two\n", "Error: three\n"]


def test_empty_info_log_path_means_log_path(tmp_path):
    with make_log(tmp_path, info_log_path="") as log:
        log.error("first")
        log.info("second")
        log.warning("third")
    got = [l.split(": ", 1)[1] for l in lines(tmp_path / "err.log")]
    assert got == ["Error: first\n", "Info: second\n", "Warning: third\n"]
    assert not (tmp_path / "info.log").exists()


def test_same_path_twice_shares_one_descriptor(tmp_path):
    path = str(tmp_path / "all.log")
    log = make_log(tmp_path, log_path=path, info_log_path=path)
    assert len(log._opened) == 1
    log.close()


def test_new_file_is_0600_and_existing_file_is_appended(tmp_path):
    with make_log(tmp_path) as log:
        log.info("x")
    assert stat.S_IMODE(os.stat(tmp_path / "info.log").st_mode) == 0o600
    existing = tmp_path / "old.log"
    existing.write_text("earlier line\n")
    os.chmod(existing, 0o640)
    with make_log(tmp_path, info_log_path=str(existing)) as log:
        log.info("later")
    got = lines(existing)
    assert got[0] == "earlier line\n" and got[1].endswith("Info: later\n")
    assert stat.S_IMODE(os.stat(existing).st_mode) == 0o640


def test_home_relative_path(tmp_path):
    with make_log(tmp_path, log_path="~/mailslot.log", info_log_path="",
                  home=str(tmp_path)) as log:
        log.info("in home")
    assert lines(tmp_path / "mailslot.log")[0].endswith("Info: in home\n")


def test_dev_stderr_writes_to_fd_2():
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from mailslot.log import DeliveryLog\n"
            "log = DeliveryLog(user='bob', log_path='/dev/stderr', info_log_path='',"
            " syslog_facility='mail', deliver_log_format='msgid=%%m: %%$')\n"
            "log.delivered({'msgid': '<a@b>'}, 'saved mail to INBOX')\n"
            "log.error('bad')\nlog.close()\nprint('still open', file=sys.stderr)\n" % PYSIDE)
    run = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    got = run.stderr.splitlines()
    assert re.fullmatch(STAMP + r"lda\(bob\)<\d+>: Info: msgid=<a@b>: saved mail to INBOX",
                        got[0])
    assert got[1].endswith(": Error: bad")
    assert got[2] == "still open"  # close() never closes fd 2


def test_deliver_variables(tmp_path):
    fmt = ("%$|m=%m|s=%s|f=%f|e=%e|p=%p|w=%w|%{msgid}|%{subject}|%{from}|"
           "%{from_envelope}|%{size}|%{vsize}|%{to_envelope}|%{delivery_time}|"
           "%{session_time}|%{storage_id}|%Lf")
    values = {"msgid": "<m@x>", "subject": "Hi", "from": "A@Example.org",
              "from_envelope": "s@example.net", "size": 70, "vsize": "73",
              "to_envelope": "rcpt@example.com", "delivery_time": "4", "session_time": "0",
              "storage_id": "1.M2P3.host,S=70,W=73"}
    with make_log(tmp_path, deliver_log_format=fmt) as log:
        log.delivered(values, "saved mail to INBOX")
    text = lines(tmp_path / "info.log")[0].split(": Info: ", 1)[1]
    assert text == ("saved mail to INBOX|m=<m@x>|s=Hi|f=A@Example.org|e=s@example.net|"
                    "p=70|w=73|<m@x>|Hi|A@Example.org|s@example.net|70|73|rcpt@example.com|"
                    "4|0|1.M2P3.host,S=70,W=73|a@example.org\n")


def test_missing_msgid_is_unspecified_and_missing_fields_are_empty(tmp_path):
    with make_log(tmp_path, deliver_log_format="%m [%s] [%{storage_id}]: %$") as log:
        log.delivered({"subject": None}, "saved mail to INBOX")
    assert lines(tmp_path / "info.log")[0].endswith(
        "Info: unspecified [] []: saved mail to INBOX\n")


def test_unknown_variable_expands_empty_and_is_reported(tmp_path):
    with make_log(tmp_path, deliver_log_format="%$ x=%{nosuch} y=%q") as log:
        log.delivered({}, "saved mail to INBOX")
    assert lines(tmp_path / "info.log")[0].endswith("Info: saved mail to INBOX x= y=\n")
    (error,) = lines(tmp_path / "err.log")
    assert "Error: Failed to expand deliver_log_format=%$ x=%{nosuch} y=%q" in error


def test_empty_format_logs_nothing(tmp_path):
    with make_log(tmp_path, deliver_log_format="") as log:
        log.delivered({"msgid": "<a@b>"}, "saved mail to INBOX")
    assert lines(tmp_path / "info.log") == []


def test_dovecot_field_limits(tmp_path):
    values = {"msgid": "<" + "m" * 300 + ">", "subject": "é" * 100,
              "from_envelope": "s" * 200 + "@x"}
    with make_log(tmp_path, deliver_log_format="%m|%s|%e") as log:
        log.delivered(values, "saved")
    msgid, subject, sender = lines(tmp_path / "info.log")[0].split(
        ": Info: ", 1)[1].rstrip("\n").split("|")
    # Dovecot's str_sanitize(): at most N bytes including the "...", cut on a
    # character boundary.
    assert len(msgid.encode()) == 200 and msgid.endswith("...")
    assert subject == "é" * 38 + "..."
    assert len(sender.encode()) == 80 and sender.endswith("...")


@pytest.mark.parametrize("field", ["subject", "msgid", "from", "from_envelope"])
def test_crlf_in_a_header_cannot_forge_a_log_line(tmp_path, field):
    forged = "x\r\nNov 22 11:01:23 lda(root)<1>: Info: msgid=<evil>: saved mail to INBOX"
    fmt = "msgid=%m: %$ s=%s f=%f e=%e"
    with make_log(tmp_path, deliver_log_format=fmt) as log:
        log.delivered({field: forged}, "saved mail to INBOX")
    got = lines(tmp_path / "info.log")
    assert len(got) == 1
    assert "x??Nov 22" in got[0]
    assert got[0].count("\n") == 1 and "\r" not in got[0]


@pytest.mark.parametrize("text,expected", [
    ("a\nb", "a?b"), ("a\rb", "a?b"), ("a\x00b", "a?b"), ("a\x1b[31mb", "a?[31mb"),
    ("a\x85b", "a?b"), ("a\u2028b", "a?b"), ("a\x7fb", "a?b"), ("a\tb", "a?b"),
    ("a\udcffb", "a?b"),
])
def test_sanitize_control_characters(tmp_path, text, expected):
    assert sanitize(text) == expected
    with make_log(tmp_path, user="bo\nb") as log:
        log.error(text)
        log.info(text)
    for line in lines(tmp_path / "err.log") + lines(tmp_path / "info.log"):
        assert line.count("\n") == 1
        assert "lda(bo?b)" in line and line.endswith(expected + "\n")


def test_sanitize_keeps_printable_unicode():
    assert sanitize("Grüße 日本 🙂") == "Grüße 日本 🙂"
    assert sanitize("x" * 20, 10) == "xxxxxxx..."


def test_symlink_is_refused(tmp_path):
    target = tmp_path / "victim"
    target.write_text("")
    os.symlink(target, tmp_path / "info.log")
    with pytest.raises(LogError) as info:
        make_log(tmp_path)
    assert "symbolic link" in str(info.value) and "info.log" in str(info.value)
    assert target.read_text() == ""


def test_cannot_open_is_a_log_error_naming_path_and_reason(tmp_path):
    with pytest.raises(LogError) as info:
        make_log(tmp_path, log_path=str(tmp_path / "no" / "such" / "dir.log"))
    message = str(info.value)
    assert "log_path" in message and "dir.log" in message and "No such file" in message
    assert exit_code_for(info.value) == EX_TEMPFAIL


def test_fifo_without_reader_fails_instead_of_hanging(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(LogError) as info:
        make_log(tmp_path, log_path=str(tmp_path / "fifo"), info_log_path="")
    assert "FIFO" in str(info.value)


def test_full_disk_is_a_log_error(tmp_path):
    log = make_log(tmp_path, log_path="/dev/full", info_log_path="")
    with pytest.raises(LogError) as info:
        log.info("x")
    assert "/dev/full" in str(info.value) and "No space left" in str(info.value)
    log.close()


def test_file_size_limit_names_the_limit(tmp_path):
    # Postfix runs mailbox_command under "ulimit -f" (mailbox_size_limit). Python
    # ignores SIGXFSZ, so the write fails with EFBIG, which must be explained.
    path = tmp_path / "big.log"
    path.write_bytes(b"x" * 4096)
    code = ("import resource, sys; sys.path.insert(0, %r)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))\n"
            "from mailslot.log import DeliveryLog\nfrom mailslot.errors import LogError\n"
            "log = DeliveryLog(user='bob', log_path=%r, info_log_path='',"
            " syslog_facility='mail', deliver_log_format='%%$')\n"
            "try:\n    log.info('one more line')\nexcept LogError as exc:\n"
            "    print(exc)\n" % (PYSIDE, str(path)))
    run = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "file size limit" in run.stdout and "4096 bytes" in run.stdout
    assert "mailbox_size_limit" in run.stdout
    assert path.stat().st_size == 4096


@needs_root
def test_permission_denied_names_the_uid(tmp_path):
    nobody = pwd.getpwnam("nobody")
    os.chmod(tmp_path, 0o755)
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from mailslot.log import DeliveryLog\nfrom mailslot.errors import LogError\n"
            "try:\n    DeliveryLog(user='bob', log_path=%r, info_log_path='',"
            " syslog_facility='mail', deliver_log_format='%%$')\n"
            "except LogError as exc:\n    print(exc)\n"
            % (PYSIDE, str(tmp_path / "root-only.log")))
    run = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}",
                          f"--regid={nobody.pw_gid}", "--clear-groups",
                          sys.executable, "-I", "-c", code],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "Permission denied" in run.stdout and f"uid {nobody.pw_uid}" in run.stdout


def test_unknown_syslog_facility_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        make_log(tmp_path, syslog_facility="mial")
    assert info.value.key == "syslog_facility" and "mial" in str(info.value)


def test_check_log_format():
    check_log_format(logmod.DEFAULT_DELIVER_LOG_FORMAT)
    check_log_format("%$ %m %s %f %e %p %w %{to_envelope} %{delivery_time} "
                     "%{session_time} %{storage_id} %Ls %{hostname}")
    for bad in ("%q", "%{nosuch}", "trailing %", "%{msgid"):
        with pytest.raises(ValueError):
            check_log_format(bad)


def test_timestamp_formats(tmp_path):
    with make_log(tmp_path, log_timestamp="%Y-%m-%d %H:%M:%S.%{usecs} ") as log:
        log.info("a")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} lda\(bob\)<\d+>: Info: a\n",
                        lines(tmp_path / "info.log")[0])
    with make_log(tmp_path, log_timestamp="", info_log_path=str(tmp_path / "b.log")) as log:
        log.info("b")
    assert lines(tmp_path / "b.log")[0].startswith("lda(bob)<")


def test_import_is_light():
    code = ("import sys; sys.path.insert(0, %r); import mailslot.log; "
            "heavy = {'re', 'json', 'logging', 'email', 'argparse', 'socket', 'tempfile', "
            "'shutil', 'datetime', 'subprocess', 'syslog', 'resource', 'select'}; "
            "print(sorted(heavy & set(sys.modules)))" % PYSIDE)
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


# --- syslog -------------------------------------------------------------------------

# Runs inside a private mount namespace with a tmpfs on /dev: it binds /dev/log
# itself, logs through DeliveryLog, and prints what a syslog daemon would receive.
SYSLOG_PROGRAM = r"""
import socket, sys
sys.path.insert(0, %r)
receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
receiver.bind("/dev/log")
receiver.settimeout(0.5)  # everything is queued before the first recv
from mailslot.log import DeliveryLog
log = DeliveryLog(user="bob", log_path=%r, info_log_path=%r, syslog_facility=%r,
                  deliver_log_format="msgid=%%m: %%$", pid=4321, clock=lambda: %d)
log.delivered({"msgid": "<a@b>", "subject": "x"}, "saved mail to INBOX\r\nforged: line")
log.warning("careful")
log.error("broken")
log.close()
while True:
    try:
        print(receiver.recv(4096).decode())
    except socket.timeout:
        break
"""


def run_syslog_program(log_path, info_log_path, facility, bind_dev_log=True):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private /dev/log")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("mount namespaces are not available here")
    program = SYSLOG_PROGRAM % (PYSIDE, log_path, info_log_path, facility, FIXED_CLOCK)
    if not bind_dev_log:
        program = program.replace('receiver.bind("/dev/log")', 'receiver.bind("/dev/other")')
    run = subprocess.run(["unshare", "--mount", "sh", "-c",
                          'mount -t tmpfs none /dev && exec "$0" -I -c "$1"',
                          sys.executable, program], capture_output=True, text=True,
                         timeout=60, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    if not bind_dev_log:
        return run.stdout.splitlines(), run.stderr.splitlines()
    return run.stdout.splitlines()


@pytest.mark.parametrize("log_path", ["syslog", ""])
def test_syslog_lines(log_path):
    got = run_syslog_program(log_path, "", "mail")
    assert len(got) == 3
    # <22> = mail.info, <20> = mail.warning, <19> = mail.err; ident "mailslot";
    # no level word on info lines, as Dovecot's syslog handler.
    # RFC 3164 pads a one-digit day with a space.
    assert got[0] == ("<22>Dec  4 18:27:11 mailslot: lda(bob)<4321>: msgid=<a@b>: "
                      "saved mail to INBOX??forged: line")
    assert re.fullmatch(r"<20>.* mailslot: lda\(bob\)<4321>: Warning: careful", got[1])
    assert re.fullmatch(r"<19>.* mailslot: lda\(bob\)<4321>: Error: broken", got[2])


def test_syslog_unreachable_goes_to_stderr_and_says_why():
    got, stderr = run_syslog_program("syslog", "", "mail", bind_dev_log=False)
    assert got == []  # nothing reached the socket...
    # ...and nothing was lost: each line went to stderr, after one line saying why.
    assert len(stderr) == 4, stderr
    assert stderr[0] == ("Dec 04 18:27:11 lda(bob)<4321>: Warning: syslog is not reachable "
                         "(/dev/log: No such file or directory); log lines go to stderr "
                         "instead")
    assert stderr[1] == ("Dec 04 18:27:11 lda(bob)<4321>: Info: msgid=<a@b>: saved mail "
                         "to INBOX??forged: line")
    assert stderr[2].endswith("Warning: careful") and stderr[3].endswith("Error: broken")


def test_file_stamp_uses_the_injected_clock(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    import time as _time

    _time.tzset()
    try:
        with make_log(tmp_path, clock=lambda: FIXED_CLOCK) as log:
            log.info("a")
        (line,) = lines(tmp_path / "info.log")
        assert line.startswith("Dec 04 18:27:11 lda(bob)<")  # Dovecot's %d: zero-padded
    finally:
        monkeypatch.undo()
        _time.tzset()


def test_syslog_facility_and_info_only_to_syslog(tmp_path):
    os.chmod(tmp_path, 0o755)
    err = str(tmp_path / "err.log")
    got = run_syslog_program(err, "syslog", "local3")
    # Info goes to syslog (local3.info = 19*8+6 = 158); errors stay in the file.
    assert len(got) == 1
    assert got[0].startswith("<158>") and "msgid=<a@b>" in got[0]
    file_lines = [l.split(": ", 1)[1] for l in lines(err)]
    assert file_lines == ["Warning: careful\n", "Error: broken\n"]


# --- parity with dovecot-lda's own log lines ----------------------------------------

def _normalise(line):
    """Drop what differs by design: the timestamp's value, the pid, Dovecot's session id."""
    assert re.match(STAMP, line), line
    line = re.sub("^" + STAMP, "", line)
    return re.sub(r"^(\w+\([^)]*\))<\d+>(<[^>]*>)?: ", r"\1<PID>: ", line)


@pytest.mark.skipif(not os.path.exists(DOVECOT_LDA), reason="dovecot-lda not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="runs dovecot-lda as another uid (root needed)")
def test_same_lines_as_dovecot_lda():
    uid = free_uid()
    base = tempfile.mkdtemp(prefix="mailslot-log-")
    try:
        os.chmod(base, 0o755)
        home = os.path.join(base, "home")
        os.mkdir(home)
        os.chown(home, uid, uid)
        conf = os.path.join(base, "dovecot.conf")
        fmt = "msgid=%m: %$ (%s|%f|%e|%{to_envelope})"
        with open(conf, "w") as f:
            f.write(f"log_path = {home}/err.log\ninfo_log_path = {home}/info.log\n"
                    f"mail_location = maildir:{home}/Maildir\nssl = no\n"
                    f"deliver_log_format = {fmt}\n")
        message = (b"From: Alice <alice@example.org>\nSubject: hello\tthere\n"
                   b"Message-ID: <abc@example.org>\n\nbody\n")
        run = subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
             DOVECOT_LDA, "-c", conf, "-f", "sender@example.net", "-a", "rcpt@example.com"],
            input=message, env={"HOME": home, "USER": "ghost", "PATH": "/usr/bin:/bin"},
            capture_output=True, timeout=60)
        assert run.returncode == 0, run.stderr
        theirs = [_normalise(l) for l in lines(os.path.join(home, "info.log"))]
        ours_dir = os.path.join(base, "ours")
        os.mkdir(ours_dir)
        with DeliveryLog(user="ghost", log_path=os.path.join(ours_dir, "err.log"),
                         info_log_path=os.path.join(ours_dir, "info.log"),
                         syslog_facility="mail", deliver_log_format=fmt) as log:
            log.delivered({"msgid": "<abc@example.org>", "subject": "hello\tthere",
                           "from": "alice@example.org", "from_envelope": "sender@example.net",
                           "to_envelope": "rcpt@example.com"}, "saved mail to INBOX")
        ours = [_normalise(l) for l in lines(os.path.join(ours_dir, "info.log"))]
        assert ours == theirs
        assert theirs == ["lda(ghost)<PID>: Info: msgid=<abc@example.org>: saved mail to "
                          "INBOX (hello?there|alice@example.org|sender@example.net|"
                          "rcpt@example.com)\n"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


# The default deliver_log_format is filled in without the %-expander; the same
# format written with long names goes through variables.expand. Both lines match.
DEFAULT_FORMAT_MSGIDS = ["<abc@example.org>", "", None, "<a\r\nb@x>", "<\u2028@x>",
                         "<" + "m" * 300 + "@x>", "100%%<%u>"]


@pytest.mark.parametrize("msgid", DEFAULT_FORMAT_MSGIDS)
def test_default_format_matches_the_expander(tmp_path, msgid):
    values = {} if msgid is None else {"msgid": msgid}
    for name, fmt in (("fast", logmod.DEFAULT_DELIVER_LOG_FORMAT),
                      ("expanded", "msgid=%{msgid}: %$")):
        with make_log(tmp_path, info_log_path=str(tmp_path / name),
                      deliver_log_format=fmt) as log:
            log.delivered(dict(values, vsize=lambda: 1 / 0), "saved mail to a\nb")
    fast, expanded = (lines(tmp_path / n)[0].split(": Info: ", 1)[1]
                      for n in ("fast", "expanded"))
    assert fast == expanded and fast.count("\n") == 1
