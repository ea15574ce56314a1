"""Vacation memory with the clock injected: one reply per sender and period, another
after it, per handle; the period clamped by sieve_vacation_min/max_period."""

import os
import sys

import pytest

from tests.support import REPO

sys.path.insert(0, os.path.join(REPO, "pyside"))
from mailslot import sieve  # noqa: E402
from mailslot.duplicates import DuplicateDB  # noqa: E402
from mailslot.send.compose import Original  # noqa: E402
from mailslot.send.outgoing import OutgoingMail  # noqa: E402
from mailslot.send.transport import CaptureTransport  # noqa: E402
from mailslot.sieve.mail import RawMessage  # noqa: E402

MSG = (b"From: Sender <sender@example.com>\nTo: user@example.org\n"
       b"Subject: Hi\nMessage-ID: <m1@example.com>\n\nbody\n")
DAY = 86400


class Clock:
    now = 1_800_000_000

    def __call__(self):
        return self.now


class Log:
    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(text)

    warning = error = info


@pytest.fixture
def world(tmp_path):
    clock = Clock()
    db = DuplicateDB(str(tmp_path / "dupes"), clock=clock)
    capture = CaptureTransport()

    def deliver(script, settings=None, sender="sender@example.com"):
        path = tmp_path / "s.sieve"
        path.write_text(script)
        envelope = {"from": sender, "to": "user@example.org",
                    "orig_to": "user@example.org"}
        result = sieve.run([str(path)], RawMessage(MSG), envelope,
                           settings=settings or {}, cache=False)
        assert result.status == "success", result.errors
        out = OutgoingMail(settings or {}, log=Log(), transport=capture,
                           duplicates=db, clock=clock, hostname="mx.example.org",
                           envelope=envelope, user_address="user@example.org")
        original = Original.from_message(RawMessage(MSG))
        return [out.vacation(original, a) for a in result.actions
                if a["type"] == "vacation"]

    return clock, capture, deliver


def test_once_per_period_and_again_after(world):
    clock, capture, deliver = world
    script = 'require "vacation";\nvacation :days 3 "away";\n'
    assert deliver(script) == [True]
    clock.now += 3 * DAY - 1
    assert deliver(script) == [False]
    clock.now += 1
    assert deliver(script) == [True]
    assert len(capture.sent) == 2
    assert all(s[:2] == ("", ["sender@example.com"]) for s in capture.sent)


def test_each_handle_and_each_sender_has_its_own_memory(world):
    clock, capture, deliver = world
    one = 'require "vacation";\nvacation :handle "a" "away";\n'
    two = 'require "vacation";\nvacation :handle "b" "away";\n'
    assert deliver(one) == [True] and deliver(two) == [True]
    assert deliver(one) == [False]
    assert deliver(one, sender="other@example.com") == [True]


@pytest.mark.parametrize("script,settings,period", [
    # :seconds under the minimum is raised to it (default minimum: one day).
    ('require "vacation-seconds";\nvacation :seconds 60 "away";\n',
     {"sieve_extensions": "+vacation-seconds"}, DAY),
    ('require "vacation-seconds";\nvacation :seconds 60 "away";\n',
     {"sieve_extensions": "+vacation-seconds", "sieve_vacation_min_period": 30}, 60),
    ('require "vacation";\nvacation :days 30 "away";\n',
     {"sieve_vacation_max_period": 2 * DAY}, 2 * DAY),
    ('require "vacation";\nvacation "away";\n',
     {"sieve_vacation_default_period": 5 * DAY}, 5 * DAY),
])
def test_period_is_clamped(world, script, settings, period):
    clock, capture, deliver = world
    assert deliver(script, settings) == [True]
    clock.now += period - 1
    assert deliver(script, settings) == [False]
    clock.now += 1
    assert deliver(script, settings) == [True]
