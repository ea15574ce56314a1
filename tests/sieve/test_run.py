"""The delivery engine's entry point: mailslot.sieve.run() and delivery_scripts().

These run real scripts from files against real messages (mailslot.sieve.mail's
RawMessage offers the two methods the engine's Message offers) and check the
SieveResult the engine carries out: actions, implicit keep, errors, the user
log, the script sequence (before / personal / after / discard) and the script
choice from the settings.
"""

import os

import pytest

from mailslot import sieve
from mailslot.sieve.mail import RawMessage

MESSAGE = (b"From: Alice <alice@example.org>\n"
           b"To: Bob <bob@example.com>\n"
           b"Subject: Hello there\n"
           b"Message-ID: <run-1@example.org>\n"
           b"\n"
           b"Hi Bob.\n")

ENVELOPE = {"from": "alice@example.org", "to": "bob@example.com"}


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def run(scripts, tmp_path, message=MESSAGE, envelope=ENVELOPE, settings=None, **kw):
    logs = []
    res = sieve.run(scripts, RawMessage(message), envelope, settings=settings,
                    log=lambda level, text: logs.append((level, text)), **kw)
    return res, logs


def test_fileinto_cancels_implicit_keep(tmp_path):
    script = write(tmp_path / "a.sieve", 'require "fileinto";\nfileinto "Work";\n')
    res, _ = run([script], tmp_path)
    assert res.status == "success"
    assert res.actions == [{"type": "store", "mailbox": "Work"}]
    assert res.implicit_keep is False


def test_no_script_is_implicit_keep(tmp_path):
    res, _ = run([str(tmp_path / "missing.sieve")], tmp_path)
    assert res.status == "success"
    assert res.actions == []
    assert res.implicit_keep is True
    assert res.implicit_keep_mailbox == "INBOX"


def test_flags_on_implicit_keep(tmp_path):
    script = write(tmp_path / "f.sieve",
                   'require "imap4flags";\naddflag ["\\\\Seen", "work"];\n')
    res, _ = run([script], tmp_path)
    assert res.implicit_keep is True
    assert res.implicit_keep_flags == ["\\Seen", "work"]


def test_sequence_stops_when_keep_is_cancelled(tmp_path):
    before = write(tmp_path / "before.sieve", 'require "fileinto";\nfileinto "Early";\n')
    personal = write(tmp_path / "personal.sieve",
                     'require "fileinto";\nfileinto "Personal";\n')
    res, _ = run([before, personal], tmp_path)
    assert [a["mailbox"] for a in res.actions] == ["Early"]
    assert res.scripts_run == ["before"]


def test_sequence_continues_while_keep_holds(tmp_path):
    before = write(tmp_path / "before.sieve",
                   'require ["fileinto", "copy"];\nfileinto :copy "Copy";\n')
    personal = write(tmp_path / "personal.sieve", 'redirect "x@example.net";\n')
    after = write(tmp_path / "after.sieve", 'require "fileinto";\nfileinto "After";\n')
    res, _ = run([before, personal, after], tmp_path)
    assert [a["type"] for a in res.actions] == ["store", "redirect"]
    assert res.scripts_run == ["before", "personal"]
    assert res.implicit_keep is False


def test_compile_error_keeps_and_writes_user_log(tmp_path):
    personal = write(tmp_path / "home" / "sieve" / "main.sieve",
                     'require "fileinto";\nfileinto "A"\nkeep;\n')
    res, logs = run([personal], tmp_path)
    assert res.status == "failed"
    assert res.implicit_keep is True
    assert res.actions == []
    assert res.errors[0] == ("main: line 2: error: missing semicolon ';' after "
                             "fileinto command.")
    log = (tmp_path / "home" / "sieve" / "main.sieve.log").read_text()
    assert "main: line 2: error: missing semicolon" in log
    assert log.startswith("sieve: info: started log at ")
    assert any("failed to compile script" in text and "main.sieve.log" in text
               for _, text in logs)


def test_runtime_error_drops_that_scripts_actions(tmp_path):
    before = write(tmp_path / "before.sieve",
                   'require ["fileinto", "copy"];\nfileinto :copy "Before";\n')
    personal = write(tmp_path / "p.sieve",
                     'require ["fileinto", "reject"];\nfileinto "X";\nreject "no";\n')
    res, logs = run([before, personal], tmp_path, global_scripts={before})
    assert res.status == "failed"
    assert [a["mailbox"] for a in res.actions] == ["Before"]
    assert res.implicit_keep is True
    assert "conflicts with other action" in res.errors[0]
    assert any("Execution of script" in text and "implicit keep was successful"
               in text for _, text in logs)


def test_user_log_rotates_at_10k(tmp_path):
    personal = write(tmp_path / "s.sieve", "frobnicate;\n")
    logfile = tmp_path / "s.sieve.log"
    logfile.write_text("x" * 11000)
    run([personal], tmp_path)
    assert (tmp_path / "s.sieve.log.0").stat().st_size == 11000
    assert "unknown command 'frobnicate'" in logfile.read_text()
    assert logfile.stat().st_size < 1000
    assert oct(logfile.stat().st_mode & 0o777) == "0o600"


def test_editheader_result_carries_the_edited_header(tmp_path):
    script = write(tmp_path / "e.sieve",
                   'require ["editheader", "fileinto"];\n'
                   'addheader "X-Sorted" "yes";\nfileinto "Sorted";\n')
    res, _ = run([script], tmp_path, settings={"sieve_extensions": "+editheader"})
    fields = res.actions[0]["header_fields"]
    assert fields[0] == ("X-Sorted", "yes")
    assert res.header_fields[0] == ("X-Sorted", "yes")


def test_vacation_decision(tmp_path):
    script = write(tmp_path / "v.sieve",
                   'require "vacation";\nvacation :subject "Away" "Back soon.";\n')
    res, _ = run([script], tmp_path)
    vac = res.actions[0]
    assert vac["type"] == "vacation"
    assert vac["send"] is True
    assert vac["to"] == "alice@example.org"
    assert vac["reply_from"] == "bob@example.com"
    assert vac["seconds"] == 7 * 86400
    assert res.implicit_keep is True


def test_vacation_not_to_lists(tmp_path):
    script = write(tmp_path / "v.sieve", 'require "vacation";\nvacation "Away";\n')
    msg = MESSAGE.replace(b"Subject:", b"List-Id: <l.example.org>\nSubject:")
    res, _ = run([script], tmp_path, message=msg)
    assert res.actions[0]["send"] is False
    assert "mailinglist" in res.actions[0]["skip_reason"]


def test_vacation_not_when_not_addressed(tmp_path):
    script = write(tmp_path / "v.sieve", 'require "vacation";\nvacation "Away";\n')
    res, _ = run([script], tmp_path, envelope={"from": "alice@example.org",
                                               "to": "other@example.com"})
    assert res.actions[0]["send"] is False
    assert "implicitly delivered" in res.actions[0]["skip_reason"]


def test_envelope_null_sender(tmp_path):
    script = write(tmp_path / "n.sieve",
                   'require ["envelope", "fileinto"];\n'
                   'if envelope :is "from" "" { fileinto "Bounces"; }\n')
    res, _ = run([script], tmp_path, envelope={"from": "<>", "to": "bob@example.com"})
    assert res.actions == [{"type": "store", "mailbox": "Bounces"}]


def test_mailboxexists_uses_the_hosts_answer(tmp_path):
    script = write(tmp_path / "m.sieve",
                   'require ["mailbox", "fileinto"];\n'
                   'if mailboxexists "Lists" { fileinto "Lists"; }\n')
    res, _ = run([script], tmp_path, mailbox_exists=lambda name: name == "Lists")
    assert res.actions == [{"type": "store", "mailbox": "Lists"}]
    res, _ = run([script], tmp_path, mailbox_exists=lambda name: False)
    assert res.actions == []


def test_discard_script_runs_when_nothing_delivers(tmp_path):
    personal = write(tmp_path / "p.sieve", "discard;\n")
    discard = write(tmp_path / "d.sieve", 'require "fileinto";\nfileinto "Trash";\n')
    res, _ = run([personal], tmp_path, discard_script=discard)
    assert {"type": "store", "mailbox": "Trash"} in res.actions
    assert res.implicit_keep is False


def test_duplicate_store_is_used(tmp_path):
    class Store:
        def __init__(self):
            self.seen = set()

        def check(self, key, period):
            return key in self.seen

        def mark(self, key, period):
            self.seen.add(key)

    script = write(tmp_path / "d.sieve",
                   'require ["duplicate", "fileinto"];\n'
                   'if duplicate { fileinto "Dupes"; }\n')
    store = Store()
    res, _ = run([script], tmp_path, duplicate=store)
    assert res.actions[0]["type"] == "duplicate_mark"
    store.mark(bytes.fromhex(res.actions[0]["key"]), 0)
    res, _ = run([script], tmp_path, duplicate=store)
    assert res.actions == [{"type": "store", "mailbox": "Dupes"}]


# -- which scripts run ---------------------------------------------------------------

def test_delivery_scripts_follow_pigeonhole(tmp_path):
    home = tmp_path / "home"
    write(home / "sieve" / "main.sieve", "keep;\n")
    os.symlink("sieve/main.sieve", home / ".dovecot.sieve")
    before = tmp_path / "before.d"
    write(before / "20-b.sieve", "keep;\n")
    write(before / "10-a.sieve", "keep;\n")
    write(before / "README", "not a script\n")
    after = write(tmp_path / "after.sieve", "keep;\n")
    plan = sieve.delivery_scripts({"sieve_before": str(before),
                                   "sieve_after": after}, str(home))
    assert plan["scripts"] == [str(before / "10-a.sieve"), str(before / "20-b.sieve"),
                               str(home / ".dovecot.sieve"), after]
    assert plan["personal"] == str(home / ".dovecot.sieve")
    assert plan["sieve_dir"] == str(home / "sieve")
    assert plan["user_log"] == str(home / ".dovecot.sieve.log")
    assert plan["global_scripts"] == {str(before / "10-a.sieve"),
                                      str(before / "20-b.sieve"), after}


def test_delivery_scripts_default_when_user_has_none(tmp_path):
    default = write(tmp_path / "default.sieve", "keep;\n")
    plan = sieve.delivery_scripts({"sieve": "file:~/sieve;active=~/.dovecot.sieve",
                                   "sieve_default": default}, str(tmp_path / "home"))
    assert plan["scripts"] == [default]
    assert default in plan["global_scripts"]
    assert plan["user_log"] is None


def test_personal_include_uses_the_sieve_location(tmp_path):
    home = tmp_path / "home"
    write(home / "sieve" / "lib.sieve", 'require "fileinto";\nfileinto "FromLib";\n')
    main = write(home / "sieve" / "main.sieve", 'require "include";\ninclude "lib";\n')
    res, _ = run([main], tmp_path,
                 settings={"sieve": "file:~/sieve;active=~/.dovecot.sieve"},
                 home=str(home))
    assert res.actions == [{"type": "store", "mailbox": "FromLib"}]


@pytest.mark.parametrize("envelope", [
    {"from": "alice@example.org", "to": "bob+lists@example.com"},
    type("E", (), {"from_": "alice@example.org", "to": "bob+lists@example.com",
                   "orig_to": None, "auth": None})(),
])
def test_envelope_as_mapping_or_object(tmp_path, envelope):
    script = write(tmp_path / "s.sieve",
                   'require ["envelope", "subaddress", "fileinto"];\n'
                   'if envelope :detail "to" "lists" { fileinto "Lists"; }\n')
    res, _ = run([script], tmp_path, envelope=envelope)
    assert res.actions == [{"type": "store", "mailbox": "Lists"}]


def test_an_internal_error_keeps_the_message(tmp_path):
    """A bug (here: a host message without read_bytes) ends in implicit keep."""
    class HeaderOnly:
        def header_fields(self):
            return [("Subject", "x")]

    script = write(tmp_path / "b.sieve",
                   'require "body";\nif body :contains "x" { discard; }\n')
    logs = []
    res = sieve.run([script], HeaderOnly(), ENVELOPE,
                    log=lambda level, text: logs.append(text))
    assert res.status == "failed"
    assert res.implicit_keep is True and res.actions == []
    assert any("internal error" in text and "AttributeError" in text for text in logs)


def test_user_log_keeps_at_most_30_errors(tmp_path):
    script = write(tmp_path / "many.sieve",
                   "".join("bogus%d;\n" % i for i in range(60)))
    res, _ = run([script], tmp_path)
    assert res.status == "failed"
    log = (tmp_path / "many.sieve.log").read_text()
    assert log.count(": error: unknown command") == 30


def test_default_mailbox_is_lda_m(tmp_path):
    script = write(tmp_path / "k.sieve", "keep;\n")
    res, _ = run([script], tmp_path, default_mailbox="Archive")
    assert res.actions == [{"type": "keep", "mailbox": "Archive"}]
    res, _ = run([str(tmp_path / "none.sieve")], tmp_path, default_mailbox="Archive")
    assert res.implicit_keep and res.implicit_keep_mailbox == "Archive"


def test_a_header_edit_is_seen_by_the_next_test(tmp_path):
    # Decoded header values are kept per message (a filter list tests the same
    # Subject once per rule); an edit must drop them, or a test after
    # deleteheader/addheader would still see the old field.
    script = write(tmp_path / "s.sieve", """require ["editheader", "fileinto"];
if header :contains "subject" "Hello" { fileinto "Before"; }
deleteheader "subject";
if header :contains "subject" "Hello" { fileinto "Stale"; }
addheader "Subject" "=?utf-8?q?Gr=C3=BC=C3=9Fe?=";
if header :is "subject" "Grüße" { fileinto "After"; }
""")
    res, _ = run([script], tmp_path, settings={"sieve_extensions": "+editheader"})
    assert res.status == "success", res.errors
    assert [a["mailbox"] for a in res.actions] == ["Before", "After"]


def test_an_envelope_changed_during_a_run_is_seen(tmp_path):
    # Envelope test values are worked out once per envelope; the test suite's
    # test_set changes the envelope's addresses in place between two tests.
    from mailslot.sieve.address import parse_path
    from mailslot.sieve.diagnostics import Diagnostics
    from mailslot.sieve.extensions.core_runtime import envelope_values
    from mailslot.sieve.interpreter import Interpreter
    from mailslot.sieve.program import Program
    from mailslot.sieve.runner import RunContext
    from mailslot.sieve.settings import SieveSettings
    ctx = RunContext(RawMessage(MESSAGE), ENVELOPE, SieveSettings(), Diagnostics())
    it = Interpreter(ctx, Program("t", [], ["envelope"]))
    assert envelope_values(it, ["from"], "all") == ["alice@example.org"]
    assert envelope_values(it, ["from"], "domain") == ["example.org"]
    ctx.envelope.sender = parse_path("carol@example.net")
    assert envelope_values(it, ["from"], "all") == ["carol@example.net"]
    ctx.envelope.auth_user = "dave"
    assert envelope_values(it, ["auth"], "all") == ["dave"]


def test_a_run_leaves_the_compiled_program_unchanged(tmp_path):
    # Interpreter.expand_list hands callers the program's own string lists when
    # they hold no variables: a run that wrote into one would change the program
    # for the next test, rule or delivery. Every kind of caller runs here twice.
    import copy
    from mailslot.sieve.diagnostics import Diagnostics
    from mailslot.sieve.runner import RunContext, run_program
    from mailslot.sieve.script import compile_text, make_env
    from mailslot.sieve.settings import SieveSettings
    source = """require ["fileinto", "envelope", "imap4flags", "variables", "body",
        "editheader", "enotify", "mailbox", "relational", "date", "environment",
        "subaddress", "regex", "comparator-i;ascii-numeric"];
if header :contains ["subject", "x-none"] ["hello", "other"] { addflag ["\\\\Seen", "a b"]; }
if address :all :is ["from", "to"] ["alice@example.org", "x@y"] { setflag "f" ["c", "d"]; }
if envelope :domain :is ["from", "to"] ["example.org"] { addflag "f" ["e"]; removeflag "f" ["c"]; }
if string :count "ge" :comparator "i;ascii-numeric" ["a", "", "b"] ["1"] { set "v" "1"; }
if body :content ["text", "image"] :contains ["Hi", "Bob"] { fileinto :flags ["\\\\Flagged", "x"] "Body"; }
if hasflag :contains ["seen"] { keep; }
if mailboxexists ["INBOX", "Other"] { keep; }
if valid_notify_method ["mailto:a@example.org"] { notify :options ["k=v"] "mailto:b@example.org"; }
if header :regex "subject" ["^hel+o", "x"] { keep; }
if environment :contains "name" ["mailslot", "x"] { keep; }
if currentdate :value "ge" "year" ["2000"] { keep; }
deleteheader :matches "x-spam" ["*a*", "b"];
"""
    settings = SieveSettings.from_mapping({"sieve_extensions": "+editheader"})
    program = compile_text(source, "t", make_env(settings), Diagnostics())
    assert program is not None
    before = copy.deepcopy(program.ops)
    for _ in range(2):
        ctx = RunContext(RawMessage(MESSAGE), ENVELOPE, settings, Diagnostics())
        assert run_program(ctx, program) == "success", ctx.diag.lines
        assert any(a.kind == "store" for a in ctx.result.actions)
    assert program.ops == before


def test_decoded_header_values_kept_for_the_run_are_charged():
    # The decoded values stay for the whole run: the memory budget counts them
    # (a plain value is the header's own string and costs nothing more).
    from mailslot.sieve.mail import MessageView
    from mailslot.sieve.memory import Budget, text_cost
    raw = (b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\nX-Plain: hello\n\nbody\n")
    view = MessageView(RawMessage(raw), Budget(None))
    view.fields()
    before = view.budget.used
    assert view.decoded_values("x-plain") == ["hello"]
    assert view.budget.used == before
    assert view.decoded_values("Subject") == ["Grüße"]
    assert view.budget.used == before + text_cost(len("=?utf-8?q?Gr=C3=BC=C3=9Fe?="))
    assert view.decoded_values("SUBJECT") == ["Grüße"]       # kept: charged once
    assert view.budget.used == before + text_cost(len("=?utf-8?q?Gr=C3=BC=C3=9Fe?="))
