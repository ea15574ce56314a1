"""The command line: dovecot-lda's options, strictly parsed."""

import pytest

from mailslot.cli import parse_args
from mailslot.message import parse_address
from mailslot.errors import UsageError, exit_code_for, EX_USAGE


def test_all_options_parse():
    opts = parse_args(["-d", "bob@example.org", "-a", "bob+x@example.org",
                       "-r", "bob@example.org", "-f", "<s@example.org>", "-c", "/c.yaml",
                       "-o", "mail_fsync=never", "-o", "hostname=h", "-m", "INBOX/x",
                       "-n", "-s", "-e", "-k", "-p", "/tmp/m"])
    assert opts.user == "bob@example.org"
    assert opts.original_recipient == "bob+x@example.org"
    assert opts.final_recipient == "bob@example.org"
    assert opts.sender == "s@example.org" and opts.sender_given
    assert opts.config_path == "/c.yaml"
    assert opts.overrides == [("mail_fsync", "never"), ("hostname", "h")]
    assert opts.mailbox == "INBOX/x"
    assert opts.no_create and opts.subscribe and opts.stderr_reject
    assert opts.keep_environment and opts.message_path == "/tmp/m"


def test_attached_arguments_and_grouped_flags():
    opts = parse_args(["-dbob", "-ens", "-fa@b"])
    assert opts.user == "bob" and opts.sender == "a@b"
    assert opts.stderr_reject and opts.no_create and opts.subscribe


@pytest.mark.parametrize("value", ["", "<>", " <> "])
def test_null_sender(value):
    opts = parse_args(["-f", value])
    assert opts.sender == "" and opts.sender_invalid is None


@pytest.mark.parametrize("value", ["a b@c", "<a@b", "x@y>z", "a\n@b", "@", "a@",
                                   "a" * 300 + "@b", '"open@b'])
def test_unparsable_sender_becomes_null_and_is_remembered(value):
    opts = parse_args(["-f", value])
    assert opts.sender == "" and opts.sender_invalid == value


# As dovecot-lda: a -f that is not ASCII (UTF-8, RFC 6531; or bytes that are not
# UTF-8, which argv carries as surrogates) is the null sender, remembered for the log.
@pytest.mark.parametrize("value", ["jörg@example.com", "<sender@exämple.com>",
                                   '"j ö"@example.com', "j\udce9rg@example.com"])
def test_sender_not_ascii_becomes_null_and_is_remembered(value):
    opts = parse_args(["-f", value])
    assert opts.sender == "" and opts.sender_invalid == value


# Every character RFC 5322 allows in an atom, a quoted local part with an escaped
# quote: ASCII, kept as given.
@pytest.mark.parametrize("value", ["a!#$%&'*+/=?^_`{|}~-b@example.com",
                                   '"odd\\"q x"@example.org'])
def test_unusual_ascii_addresses_are_kept(value):
    opts = parse_args(["-f", value, "-a", value, "-r", value])
    assert opts.sender == opts.original_recipient == opts.final_recipient == value
    assert opts.sender_invalid is None


@pytest.mark.parametrize("option", ["-a", "-r"])
@pytest.mark.parametrize("value", ["jörg@example.org", "someone@exämple.org",
                                   "j\udce9rg@example.org"])
def test_recipient_not_ascii_is_a_usage_error(option, value):
    with pytest.raises(UsageError) as info:
        parse_args([option, value])
    assert exit_code_for(info.value) == EX_USAGE
    assert str(info.value).startswith(f"option {option}: invalid address ")
    assert str(info.value).endswith("not ASCII")


def test_empty_mailbox_means_inbox():
    assert parse_args(["-m", ""]).mailbox is None


@pytest.mark.parametrize("argv", [["-x"], ["-d"], ["-o", "novalue"], ["stray"],
                                  ["-d", ""], ["-a", "bad address"], ["-q", "-d", "u"],
                                  ["-D"], ["-e", "-D"]])
def test_usage_errors_exit_64(argv):
    with pytest.raises(UsageError) as info:
        parse_args(argv)
    assert exit_code_for(info.value) == EX_USAGE


def test_quoted_local_part():
    assert parse_address('"john doe"@example.org') == '"john doe"@example.org'


@pytest.mark.parametrize("keep", [False, True], ids=["environment cleared", "-k"])
def test_mailslot_debug_prints_the_traceback_of_an_internal_error(monkeypatch, capsys, keep):
    # The delivery clears the environment (unless -k) before the error surfaces:
    # the variable must have been read before that.
    import os
    from mailslot import cli
    from mailslot.errors import EX_TEMPFAIL

    def failing_delivery(opts, **_):
        if not opts.keep_environment:
            cli.clear_environment()
        raise RuntimeError("a bug")
    monkeypatch.setattr(cli, "deliver_pipe", failing_delivery)
    monkeypatch.setenv("MAILSLOT_DEBUG", "1")
    monkeypatch.setattr(os, "environ", dict(os.environ))    # the test's own copy
    assert cli.main(["-k"] if keep else []) == EX_TEMPFAIL
    err = capsys.readouterr().err
    assert "mailslot-lda: internal error: RuntimeError: a bug" in err
    assert "Traceback (most recent call last)" in err


def test_no_traceback_without_mailslot_debug(monkeypatch, capsys):
    from mailslot import cli
    monkeypatch.delenv("MAILSLOT_DEBUG", raising=False)
    monkeypatch.setattr(cli, "deliver_pipe", lambda opts, **_: 1 / 0)
    cli.main([])
    err = capsys.readouterr().err
    assert err == "mailslot-lda: internal error: ZeroDivisionError: division by zero\n"


# RFC 5321 4.1.2/3.3: a source route in <> is accepted and dropped, as dovecot-lda
# does (its reject goes to the mailbox); outside <> or naming a domain literal it
# is not a path (dovecot-lda: <>).
@pytest.mark.parametrize("text, expected", [
    ("<@relay.example:s@example.com>", "s@example.com"),
    ("<@a.example,@b.example:s@example.com>", "s@example.com"),
    ("<@[192.0.2.1]:s@example.com>", None),
    ("@relay.example:s@example.com", None),
    ("<@:s@example.com>", None),
    ("<@a.example,b.example:s@example.com>", None)])
def test_source_route(text, expected):
    assert parse_address(text) == expected
