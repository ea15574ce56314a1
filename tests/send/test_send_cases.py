"""The mail a delivery sends (or not), case by case, beside dovecot-lda.

postmaster_address (what From and envelope it gives, what an unusable one
means), the envelope's edge cases (a user without a domain, source routes, a
sender that is not ASCII) and redirect's header, through a whole delivery.

One case a file under tests/send/cases/ (*.case, sections as in
tests/sieve/casefile.py):

    == postmaster_address   the setting's value, one line (absent: not set)
    == config               more settings for both programs, "key = value"
                            (a sieve_* one goes in Dovecot's plugin block)
    == script               the recipient's Sieve script
    == args                 the LDA's options, one per line
                            (default: -f sender@example.com)
    == system hostname      run both in their own UTS and mount namespaces
                            where the system's host name is this (and
                            /etc/hosts names only it), the hostname setting
                            empty: what "the system's host name" gives
    == expect               what the delivery does, as observe() writes it:
                            exit: <status>
                            saved: <mailbox> | none
                            sent: <envelope sender> -> <recipients> | From: <From>
                            sent: none
                            final-recipient: <a rejection's>
                            redirected-from: <a forwarded copy's header>
                            sieve: ran | not run (postmaster_address)

The recipient is a system user without a domain (so %d is empty), the hostname
setting mx.example.org. Each case runs through the installed mailslot-lda (its
mail to an SMTP sink) and checks the expectation; then, where Dovecot is
installed, through /usr/lib/dovecot/dovecot-lda (Pigeonhole; its sendmail_path a
capturing script) with the same setting, which must answer the same.
"""

import email
import email.policy
import os
import subprocess
from pathlib import Path

import pytest

from tests.dovecot_env import DOVECOT_LDA, DovecotEnv, dovecot_missing
from tests.quota.conftest import quota_env  # noqa: F401 (the fixture)
from tests.send.capture import CapturingSendmail
from tests.sieve.casefile import Case
from tests.support import needs_root

pytestmark = needs_root

CASES = sorted((Path(__file__).parent / "cases").glob("*.case"))
HOST = "mx.example.org"
MSG = (b"From: Sender Name <sender@example.com>\nTo: someone@example.org\n"
       b"Subject: Hello there\nMessage-ID: <pmcase@example.com>\n\nbody line\n")
DEFAULT_ARGS = ["-f sender@example.com"]


def _lines(case, name):
    return [line.strip() for line in case.sections.get(name, "").splitlines()
            if line.strip()]


def _config(case):
    return [tuple(part.strip() for part in line.split("=", 1))
            for line in _lines(case, "config")]


def _argv(case):
    out = []
    for line in _lines(case, "args") or DEFAULT_ARGS:
        opt, _, value = line.partition(" ")
        out += [opt] + ([value.strip()] if value.strip() else [])
    return out


def _setting(case):
    if "postmaster_address" not in case.sections:
        return None
    return case.sections["postmaster_address"].rstrip("\n")


def observe(status, home, sent, log, user):
    """The case's expect lines for one run: exit status, where the message was
    saved (Maildir++ under ~/Maildir), what was sent (a rejection's
    Final-Recipient too), whether Sieve ran; the user's name reads USER."""
    lines = [f"exit: {status}"]
    saved = []
    root = os.path.join(home, "Maildir")
    for folder in sorted(os.listdir(root)) if os.path.isdir(root) else ():
        path = os.path.join(root, folder) if folder.startswith(".") else None
        if path and os.path.isdir(os.path.join(path, "new")) and \
                os.listdir(os.path.join(path, "new")):
            saved.append(folder[1:])
    if os.path.isdir(os.path.join(root, "new")) and os.listdir(os.path.join(root, "new")):
        saved.insert(0, "INBOX")
    lines.append("saved: " + (" ".join(saved) or "none"))
    for sender, recipients, data in sent:
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
        lines.append(f"sent: <{sender}> -> {' '.join(recipients)} | From: "
                     + " ".join(str(msg["From"]).split()))
        if msg["X-Sieve-Redirected-From"]:
            lines.append("redirected-from: " + msg["X-Sieve-Redirected-From"].replace(
                user, "USER"))
        if msg.get_content_type() == "multipart/report":
            report = msg.get_payload()[1].get_payload()[0]
            lines.append("final-recipient: " + report["Final-Recipient"].replace(
                user, "USER"))
    if not sent:
        lines.append("sent: none")
    failed = any("Error:" in line and "Failed to initialize script execution" in line
                 and "postmaster_address" in line for line in log.splitlines())
    lines.append("sieve: not run (postmaster_address)" if failed else "sieve: ran")
    return lines


def _system_hostname(case):
    return case.sections.get("system hostname", "").strip() or None


def _in_namespace(case, argv, directory):
    """argv run where the system's host name is the case's (unshare -m -u: the
    test's own UTS name and a private /etc/hosts naming only it, so that no
    resolver can give a longer name); argv as it is without one."""
    name = _system_hostname(case)
    if name is None:
        return argv
    hosts = os.path.join(directory, "hosts")
    with open(hosts, "w") as f:
        f.write(f"127.0.0.1 localhost\n127.0.0.1 {name}\n")
    os.chmod(hosts, 0o644)
    return ["unshare", "-m", "-u", "--", "sh", "-c",
            'mount --bind "$1" /etc/hosts && hostname "$0" && shift && exec "$@"',
            name, hosts] + argv


def run_mailslot(mailer, case):
    user = mailer.users[0]
    text = (f"mail_location: maildir:~/Maildir\nlog_path: ~/log\nfirst_valid_uid: 100\n"
            f"submission_host: {mailer.sink.address}\nsubmission_timeout: 10\n")
    if _system_hostname(case) is None:
        text += f"hostname: {HOST}\n"
    setting = _setting(case)
    if setting is not None:
        text += f"postmaster_address: '{setting}'\n"
    text += "".join(f"{key}: '{value}'\n" for key, value in _config(case))
    with open(mailer.conf, "w") as f:
        f.write(text)
    mailer.script(user, case.script)
    if _system_hostname(case) is None:
        proc = mailer.deliver(user, MSG, *_argv(case))
    else:
        lda = [os.path.join(mailer.installed, "mailslot-lda"), "-c", mailer.conf]
        argv = _in_namespace(case, ["setpriv", f"--reuid={user.pw_uid}",
                                    f"--regid={user.pw_gid}", "--init-groups", "--"]
                             + lda + _argv(case), mailer.confdir)
        proc = subprocess.run(argv, input=MSG, capture_output=True, timeout=60, cwd="/",
                              env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
                                   "USER": user.pw_name, "HOME": user.pw_dir,
                                   "LOGNAME": user.pw_name})
    sent = [(m.sender, m.recipients, m.data) for m in mailer.sink.messages]
    return observe(proc.returncode, user.pw_dir, sent, mailer.log(user),
                   user.pw_name), proc


def run_dovecot(case):
    sendmail = CapturingSendmail("mailslot-send-pmcase-")
    extra = {"mail_plugins": "sieve", "sendmail_path": sendmail.path,
             # mailslot's default (README: lda_mailbox_autocreate)
             "lda_mailbox_autocreate": "yes"}
    if _system_hostname(case) is None:
        extra["hostname"] = HOST
    setting = _setting(case)
    if setting is not None:
        extra["postmaster_address"] = setting
    plugin = {}
    for key, value in _config(case):
        (plugin if key.startswith("sieve_") else extra)[key] = value
    env = DovecotEnv.create(extra_settings=extra)
    try:
        with open(env.conf, "a") as f:
            f.write("plugin {\n" + "".join(f"  {k} = {v}\n" for k, v in plugin.items())
                    + "}\n")
        path = os.path.join(env.home, ".dovecot.sieve")
        with open(path, "w") as f:
            f.write(case.script)
        env.give(path)
        argv = _in_namespace(case, env.user_argv([DOVECOT_LDA, "-c", env.conf]
                                                 + _argv(case)), sendmail.spool)
        proc = subprocess.run(argv, input=MSG, capture_output=True, timeout=120,
                              cwd=env.base)
        return (observe(proc.returncode, env.home, sendmail.sent(), env.read_log(),
                        env.user),
                env.read_log())
    finally:
        env.cleanup()
        sendmail.cleanup()


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_postmaster_case(mailer, path):
    case = Case(path)
    expect = _lines(case, "expect")
    ours, proc = run_mailslot(mailer, case)
    assert ours == expect, (proc.stderr, mailer.log(mailer.users[0]))
    if dovecot_missing() is None:
        theirs, log = run_dovecot(case)
        assert theirs == expect, log


def test_over_quota_dsn_with_an_unusable_postmaster_address_is_not_sent(quota_env):
    """Over quota (quota_full_tempfail off) the sender gets a DSN from the
    postmaster; with postmaster@%d for a user without a domain dovecot-lda sends
    nothing and fails for now (75, an error in its log): the MTA keeps the
    message and retries. mailslot the same, and neither saves it."""
    from tests.quota.qenv import POSTMASTER, message
    programs = ("mailslot", "dovecot") if dovecot_missing() is None else ("mailslot",)
    for program in programs:
        q = quota_env(rules={"quota_rule": "*:storage=10k"})
        for path in (q.conf, q.env.conf):
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(text.replace(POSTMASTER, "postmaster@%d"))
        lda = q.mailslot_lda if program == "mailslot" else q.dovecot_lda
        for i in range(3):
            assert lda(message(3000, msgid=f"<fill{i}@example.org>"),
                       "-f", "s@example.org").returncode == 0
        proc = lda(message(3000, msgid="<over@example.org>"), "-f", "sender@example.org")
        assert proc.returncode == 75, (program, proc.stderr)
        assert q.sent() == [], program
        log = q.log() if program == "mailslot" else q.env.read_log()
        assert "postmaster_address" in log and "Error" in log, (program, log)
        saved = []
        for folder in ("new", "cur"):
            for name in os.listdir(os.path.join(q.maildir, folder)):
                with open(os.path.join(q.maildir, folder, name), "rb") as f:
                    saved.append(f.read())
        assert len(saved) == 3 and not any(b"<over@example.org>" in m for m in saved)
