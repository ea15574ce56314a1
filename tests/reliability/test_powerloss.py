"""The power-loss model (tests/reliability/powerloss.py): after any operation of a
real delivery, a power cut leaves no partial message visible and, once the engine
has exited 0, the message on disk -- and the model is shown to catch a missing
fsync, by dropping each of the engine's fsyncs from the trace."""

import pytest

from tests.reliability import powerloss
from tests.support import needs_root

pytestmark = needs_root


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_no_crash_point_loses_or_tears_a_message(fmt):
    result = powerloss.run(fmt)
    assert result["violation_count"] == 0, result
    assert result["crash_points"] > 10


def drop_sync(n):
    """A trace mutation: the n-th sync of the delivery never happened."""
    def mutate(events):
        syncs = [i for i, e in enumerate(events) if e["op"] == "sync"]
        mutate.count = len(syncs)
        return [e for i, e in enumerate(events) if i != syncs[n]] if n < len(syncs) \
            else events
    return mutate


@pytest.mark.parametrize("fmt,n,what", [
    ("maildir", 0, "the message file's fsync before its rename"),
    ("maildir", 1, "new/'s fsync after the rename"),
    ("mbox", 0, "the journal record's fdatasync before the append"),
    ("mbox", 1, "the mbox's fdatasync before exit 0"),
])
def test_the_model_catches_each_missing_fsync(fmt, n, what):
    result = powerloss.run(fmt, drop_sync(n))
    assert result["violation_count"] > 0, (what, result)
