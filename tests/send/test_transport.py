"""Handing mail to sendmail_path (an argv, never a shell) and to an SMTP server."""

import os
import subprocess
import sys

import pytest

from tests.support import REPO
from tests.send.smtpsink import SmtpSink

sys.path.insert(0, os.path.join(REPO, "pyside"))
from mailslot.errors import SendError  # noqa: E402
from mailslot.send.transport import (SendmailTransport, SmtpTransport,  # noqa: E402
                                     make_transport, parse_host_port)


@pytest.fixture
def fake_sendmail(tmp_path):
    """A sendmail_path that records its argv and stdin (exit status from a file)."""
    path = tmp_path / "sendmail"
    path.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > "
                    f"{tmp_path}/args\ncat > {tmp_path}/stdin\n"
                    f"[ -f {tmp_path}/fail ] && {{ echo 'queue file write error' >&2; "
                    "exit 75; }\nexit 0\n")
    path.chmod(0o755)
    return tmp_path


def test_sendmail_argv_and_stdin(fake_sendmail):
    t = SendmailTransport(str(fake_sendmail / "sendmail"), nnp=lambda: False)
    t.send("", ["a@example.org", "b@example.org"], [b"Subject: x\n", b"\nbody\n"])
    assert (fake_sendmail / "args").read_text().split("\n")[:-1] == [
        "-i", "-f", "<>", "--", "a@example.org", "b@example.org"]
    assert (fake_sendmail / "stdin").read_bytes() == b"Subject: x\n\nbody\n"
    t.send("s@example.com", ["a@example.org"], [b"x\n"])
    assert (fake_sendmail / "args").read_text().split("\n")[:3] == ["-i", "-f",
                                                                   "s@example.com"]


def test_sendmail_failure_is_a_send_error_with_its_words(fake_sendmail):
    (fake_sendmail / "fail").write_text("")
    t = SendmailTransport(str(fake_sendmail / "sendmail"), nnp=lambda: False)
    with pytest.raises(SendError, match="exit status 75: queue file write error"):
        t.send("", ["a@example.org"], [b"x\n"])


@pytest.mark.parametrize("address", ["-oQ/tmp/evil", "a@b\nRCPT TO:<c@d>", "a<b>@c",
                                     "x" * 300 + "@example.org"])
def test_hostile_addresses_never_reach_the_argv(fake_sendmail, address):
    t = SendmailTransport(str(fake_sendmail / "sendmail"), nnp=lambda: False)
    with pytest.raises(SendError):
        t.send("", [address], [b"x\n"])
    with pytest.raises(SendError):
        t.send(address, ["a@example.org"], [b"x\n"])
    assert not (fake_sendmail / "args").exists()


def test_no_new_privs_refuses_sendmail_path_with_a_clear_error(fake_sendmail):
    """A real process under PR_SET_NO_NEW_PRIVS (setpriv --no-new-privs)."""
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from mailslot.send.transport import SendmailTransport, no_new_privs\n"
            "print(no_new_privs())\n"
            "try:\n    SendmailTransport(%r).check()\nexcept Exception as e:\n"
            "    print(type(e).__name__, e)\n") % (os.path.join(REPO, "pyside"),
                                                 str(fake_sendmail / "sendmail"))
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert plain.stdout == "False\n"
    nnp = subprocess.run(["setpriv", "--no-new-privs", sys.executable, "-c", code],
                         capture_output=True, text=True)
    assert nnp.stdout.startswith("True\nSendError sendmail_path ")
    assert "no_new_privs" in nnp.stdout and "submission_host" in nnp.stdout


def test_smtp_envelope_and_dot_stuffing():
    with SmtpSink() as sink:
        t = SmtpTransport(sink.address, timeout=5)
        t.send("", ["a@example.org"], [b"Subject: x\n\n.dot\n", b"..two\nlast"])
        got = sink.wait(1)
    assert got[0].sender == "" and got[0].recipients == ["a@example.org"]
    assert got[0].data == b"Subject: x\n\n.dot\n..two\nlast\n"
    assert "mail from:<>" in [c.lower() for c in sink.commands]
    assert sink.commands[0] == "ehlo " + os.uname().nodename   # no DNS lookup for it


def test_smtp_auth_when_configured():
    with SmtpSink(auth=True) as sink:
        t = make_transport({"submission_host": sink.address, "submission_user": "mx1",
                            "submission_password": "s3cret", "submission_timeout": 5})
        t.send("a@example.org", ["b@example.org"], [b"x\n"])
        assert sink.logins == [("mx1", "s3cret")]
        assert sink.wait(1)[0].sender == "a@example.org"


def test_starttls_required_but_not_offered_is_refused_not_downgraded():
    with SmtpSink() as sink:
        t = make_transport({"submission_host": sink.address, "submission_ssl": "starttls",
                            "submission_timeout": 5})
        with pytest.raises(SendError):
            t.send("", ["b@example.org"], [b"x\n"])
        assert sink.wait(1, timeout=0.3) == []
        assert not any(c.lower().startswith("mail") for c in sink.commands)


def test_smtp_refusal_is_a_send_error():
    with SmtpSink(fail_data="451 4.3.0 try later") as sink:
        t = SmtpTransport(sink.address, timeout=5)
        with pytest.raises(SendError, match="451 4.3.0 try later"):
            t.send("", ["a@example.org"], [b"x\n"])


def test_smtp_unreachable_is_a_send_error():
    import socket
    with socket.socket() as s:        # bound, never listening: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(SendError, match="cannot connect"):
            SmtpTransport(f"127.0.0.1:{port}", timeout=2).send("", ["a@b.example"],
                                                               [b"x\n"])


@pytest.mark.parametrize("text,expect", [("mx", ("mx", 25)), ("mx:587", ("mx", 587)),
                                         ("[::1]:2525", ("::1", 2525)),
                                         ("[::1]", ("::1", 25))])
def test_host_port(text, expect):
    assert parse_host_port(text) == expect


@pytest.mark.parametrize("text", [":25", "mx:0", "mx:99999", "mx:x"])
def test_bad_host_port(text):
    with pytest.raises(SendError):
        parse_host_port(text)


def test_settings_choose_the_transport():
    assert make_transport({"sendmail_path": "/usr/sbin/sendmail"}).name == "sendmail"
    smtp = make_transport({"submission_host": "127.0.0.1:2525", "submission_timeout": 7})
    assert smtp.name == "smtp" and smtp.port == 2525 and smtp.timeout == 7


@pytest.mark.parametrize("script", [
    "#!/bin/sh\nexec sleep 30\n",                       # never reads, never exits
    "#!/bin/sh\ncat > /dev/null\nexec sleep 30\n",      # reads, never exits
])
def test_a_hanging_sendmail_is_cut_off_at_the_timeout(tmp_path, script):
    import time
    path = tmp_path / "sendmail"
    path.write_text(script)
    path.chmod(0o755)
    t = SendmailTransport(str(path), timeout=1, nnp=lambda: False)
    start = time.monotonic()
    with pytest.raises(SendError):
        t.send("", ["a@example.org"], [b"x" * 1024 * 1024])
    assert time.monotonic() - start < 5


def test_any_transport_failure_is_a_send_error():
    # After a save only a SendError is logged and the saved copy stands; any other
    # exception would end the delivery with 75 after the save (the MTA's retry
    # filing it again).
    import io
    from mailslot.send.compose import Original
    from mailslot.send.outgoing import OutgoingMail
    from mailslot.sieve.mail import RawMessage

    class Broken:
        def send(self, sender, recipients, chunks):
            for _ in chunks:
                pass
            raise UnicodeEncodeError("ascii", "j\xf6rg", 1, 2, "not ASCII")
    data = b"From: a@example.org\nSubject: x\n\nbody\n"
    out = OutgoingMail({}, log=None, transport=Broken(), hostname="mx",
                       envelope={"from": "a@example.org", "to": "b@example.org",
                                 "orig_to": "b@example.org"},
                       user_address="b@example.org")
    with pytest.raises(SendError) as info:
        out.redirect(Original.from_message(RawMessage(data)), io.BytesIO(data),
                     "fwd@example.net")
    assert "UnicodeEncodeError" in str(info.value)


def test_smtp_refuses_a_non_ascii_address_with_a_send_error():
    with SmtpSink() as sink:
        transport = SmtpTransport(sink.address, timeout=10)
        with pytest.raises(SendError) as info:
            transport.send("", ["j\xf6rg@example.com"], [b"Subject: x\n\nbody\n"])
    assert "SMTPUTF8" in str(info.value) and sink.messages == []
