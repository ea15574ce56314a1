"""lda_original_recipient_header is read, never written, as dovecot-lda does.

Dovecot (15-lda.conf): the header where the original recipient is taken from when
-a does not give it. Each case delivers the same message with the same script to
Debian's dovecot-lda and to the installed mailslot-lda, with
lda_original_recipient_header = X-Original-To and -r naming the final recipient:
the script files by Sieve's envelope "to" (the original recipient), so the
mailbox each picks shows the original recipient each took; the copies must be
the input byte for byte (no header line added, with or without -a).
"""

import os

import pytest

from tests.dovecot_env import DovecotEnv, dovecot_missing
from tests.engine.sieveuser import SieveUser, sieve_user
from tests.support import needs_root, run_as

pytestmark = [needs_root, pytest.mark.skipif(dovecot_missing() is not None,
                                             reason=str(dovecot_missing()))]

SCRIPT = ('require ["envelope", "fileinto", "mailbox", "variables"];\n'
          'if envelope :matches "to" "*@*" { fileinto :create "to-${1}"; }\n')
BODY = b"From: a@example.org\nSubject: where to\nMessage-ID: <ort@example.org>\n\nHi.\n"
FINAL = ("-r", "fin@example.org")

# (header lines in the message, extra options, mailbox both must choose)
CASES = {
    "header-without-a": (b"X-Original-To: hdr@example.org\n", (), "to-hdr"),
    "header-with-name": (b"X-Original-To: Hdr <hdr@example.org>\n", (), "to-hdr"),
    "first-of-two": (b"X-Original-To: one@example.org\nX-Original-To: two@example.org\n",
                     (), "to-one"),
    "a-wins": (b"X-Original-To: hdr@example.org\n", ("-a", "arg@example.org"), "to-arg"),
    "no-header-with-a": (b"", ("-a", "arg@example.org"), "to-arg"),
}
# A field without a usable address is not taken: the original recipient is then
# the default one, the user (user@hostname without a domain), whatever -r says --
# dovecot-lda 2.3.19's default, and mailslot's (cli.build_envelope).
FALLBACK = {"not-an-address": b"X-Original-To: undisclosed-recipients\n",
            "no-header": b"",
            "empty": b"X-Original-To: <>\n",
            "no-domain": b"X-Original-To: hdr@\n"}


def dovecot_files(message, args, user_box=None):
    """{mailbox: [copy bytes]} after dovecot-lda delivered message with args
    (user_box: the name to put for the mailbox named after its user)."""
    env = DovecotEnv.create(extra_settings={
        "lda_original_recipient_header": "X-Original-To"})
    try:
        with open(env.conf, "a") as f:
            f.write("protocol lda {\n  mail_plugins = sieve\n}\n"
                    "plugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n}\n")
        with open(os.path.join(env.home, ".dovecot.sieve"), "w") as f:
            f.write(SCRIPT)
        env.give(env.home)
        env.lda(message, *args)
        found = copies(os.path.join(env.home, "Maildir"))
        if user_box is not None and f"to-{env.user}" in found:
            found[user_box] = found.pop(f"to-{env.user}")
        return found
    finally:
        env.cleanup()


def copies(maildir):
    found = {}
    for folder in [""] + sorted(n for n in os.listdir(maildir) if n.startswith(".")):
        new = os.path.join(maildir, folder, "new")
        for name in sorted(os.listdir(new)) if os.path.isdir(new) else []:
            with open(os.path.join(new, name), "rb") as f:
                found.setdefault(folder.lstrip(".") or "INBOX", []).append(f.read())
    return found


@pytest.fixture
def site(installed, mail_users):
    with sieve_user(mail_users[1], installed, "mailslot-orig-rcpt-") as s:
        yield s


def deliver(site, message, args):
    site.script(SCRIPT)
    proc = run_as(site.user, [site.lda, "-c", site.conf, "-o",
                              "lda_original_recipient_header=X-Original-To"] + args,
                  input=message)
    assert proc.returncode == 0, proc.stderr
    return copies(site.maildir)


@pytest.mark.parametrize("case", sorted(CASES))
def test_original_recipient_as_dovecot_lda_takes_it(site: SieveUser, case):
    head, extra, mailbox = CASES[case]
    message = head + BODY
    args = list(FINAL) + list(extra)
    ours = deliver(site, message, args)
    assert ours == {mailbox: [message]}, (ours, site.log())
    assert dovecot_files(message, args) == ours


@pytest.mark.parametrize("case", sorted(FALLBACK))
def test_a_field_without_an_address_is_not_taken(site: SieveUser, case):
    message = FALLBACK[case] + BODY
    ours = deliver(site, message, list(FINAL))
    assert ours == {f"to-{site.user.pw_name}": [message]}, (ours, site.log())
    assert dovecot_files(message, list(FINAL), f"to-{site.user.pw_name}") == ours
