"""postmaster_address defaults to Dovecot's: postmaster@%{if;%d;ne;;%d;%{hostname}}.

A user with a domain gets postmaster@<that domain>; a user without one (a system
user, "bob") gets postmaster@<host name> -- the hostname setting, injected here,
never the machine's name -- not an empty "postmaster@". The rejection a Sieve
reject mails shows it in From, the same as Debian's dovecot-lda writes it.
"""

import email
import email.policy
import os
import shutil

import pytest

from mailslot.config import POSTMASTER_DEFAULT, load_settings
from mailslot.recipient import expand_for_user
from mailslot.user import User
from tests.dovecot_env import DovecotEnv, dovecot_missing
from tests.support import needs_root, world_tempdir

HOST = "mx.example.org"
MSG = (b"From: Sender Name <sender@example.com>\nTo: bob@example.org\n"
       b"Subject: Hello there\nMessage-ID: <pm1@example.com>\n\nbody line\n")
REJECT = 'require "reject";\nreject "Go away.";\n'

# (postmaster_address in the file or None, user name, expanded value)
CASES = [
    (None, "bob", f"postmaster@{HOST}"),
    (None, "bob@example.net", "postmaster@example.net"),
    (None, "bob@", f"postmaster@{HOST}"),
    (POSTMASTER_DEFAULT, "bob", f"postmaster@{HOST}"),      # Dovecot's text, written out
    (POSTMASTER_DEFAULT, "bob@example.net", "postmaster@example.net"),
    ("postmaster@%d", "bob@example.net", "postmaster@example.net"),
    ("pm@%{hostname}", "bob", f"pm@{HOST}"),
    ("abuse@example.org", "bob", "abuse@example.org"),
]


@pytest.mark.parametrize("setting, user, expected", CASES)
def test_postmaster_address_for_the_user(tmp_path, setting, user, expected):
    conf = tmp_path / "mailslot.yaml"
    text = f"hostname: {HOST}\n"
    if setting is not None:
        text += f'postmaster_address: "{setting}"\n'
    conf.write_text(text)
    settings = load_settings(str(conf), use_cache=False)
    expand_for_user(settings, User(user, 1000, 1000, "/nonexistent"))
    assert settings["postmaster_address"] == expected


def _from(data):
    return email.message_from_bytes(data, policy=email.policy.compat32)["From"]


def dovecot_rejection_from(user):
    """From of the rejection dovecot-lda mails for user, with Dovecot's default
    postmaster_address and hostname HOST."""
    spool = world_tempdir("mailslot-send-pm-")
    os.chmod(spool, 0o777)
    capture = os.path.join(spool, "capture")
    with open(capture, "w") as f:
        f.write(f"#!/bin/sh\ncat > {spool}/msg\n")
    os.chmod(capture, 0o755)
    env = DovecotEnv.create(user=user, extra_settings={
        "mail_plugins": "sieve", "hostname": HOST, "sendmail_path": capture})
    try:
        path = os.path.join(env.home, ".dovecot.sieve")
        with open(path, "w") as f:
            f.write(REJECT)
        env.give(path)
        env.lda(MSG, "-f", "sender@example.com")
        with open(os.path.join(spool, "msg"), "rb") as f:
            return _from(f.read())
    finally:
        env.cleanup()
        shutil.rmtree(spool, ignore_errors=True)


@needs_root
@pytest.mark.skipif(dovecot_missing() is not None, reason=str(dovecot_missing()))
def test_rejection_for_a_user_without_a_domain_comes_from_postmaster_at_the_host(mailer):
    user = mailer.users[0]                       # a system user: no domain
    assert "@" not in user.pw_name
    with open(mailer.conf, "w") as f:            # no postmaster_address: the default
        f.write(f"mail_location: maildir:~/Maildir\nlog_path: ~/log\n"
                f"first_valid_uid: 100\nhostname: {HOST}\n"
                f"submission_host: {mailer.sink.address}\nsubmission_timeout: 10\n")
    mailer.script(user, REJECT)
    proc = mailer.deliver(user, MSG, "-f", "sender@example.com")
    assert proc.returncode == 0, proc.stderr
    [sent] = mailer.sink.wait(1)
    ours = _from(sent.data)
    assert ours == f"Postmaster <postmaster@{HOST}>"
    assert ours == dovecot_rejection_from("mstest")
