"""The vacation reply's subject without :subject (Pigeonhole's
tests/extensions/vacation/message.svtest: the configured default subject and
template, the codepoint limit with its ellipsis)."""

import os

import pytest

from mailslot import sieve
from mailslot.sieve.mail import RawMessage

ENVELOPE = {"from": "stephan@example.org", "to": "nico@frop.example.org"}


def reply_subject(tmp_path, subject_line, settings):
    script = tmp_path / "s.sieve"
    script.write_text('require "vacation";\nvacation "I am not in today!";\n')
    msg = b"From: stephan@example.org\nTo: nico@frop.example.org\n" + subject_line + \
        b"\nFrop\n"
    res = sieve.run([str(script)], RawMessage(msg), ENVELOPE, settings=settings,
                    cache=False)
    (action,) = [a for a in res.actions if a["type"] == "vacation"]
    assert action["send"], action
    return action["reply_subject"]


LONG = "Lorem ipsum dolor sit amet " * 20


@pytest.mark.parametrize("subject_line, settings, expected", [
    (b"", {}, "Automated reply"),
    (b"", {"sieve_vacation_default_subject": "Something colorful"},
     "Something colorful"),
    (b"Subject: Bloemetjes\n", {"sieve_vacation_default_subject": "Something"},
     "Auto: Bloemetjes"),
    (b"Subject: Bloemetjes\n",
     {"sieve_vacation_default_subject_template": "Automatisch bericht: %$"},
     "Automatisch bericht: Bloemetjes"),
    (b"Subject: Bloemetjes\n",
     {"sieve_vacation_default_subject_template": "%{subject} (100%%)"},
     "Bloemetjes (100%)"),
    (b"Subject: " + LONG.encode() + b"\n", {"sieve_vacation_max_subject_codepoints": "20"},
     "Auto: Lorem ipsum d\u2026"),
    (b"Subject: " + LONG.encode() + b"\n", {},
     ("Auto: " + LONG)[:255] + "\u2026"),
])
def test_default_subject(tmp_path, subject_line, settings, expected):
    assert reply_subject(tmp_path, subject_line, settings) == expected
