"""lmtp/slots.py: per-user delivery slots shared by forked workers, crash-safe."""

import os
import signal

from mailslot.lmtp.slots import UserSlots


def test_slots_conflict_within_a_process_and_are_per_user():
    slots = UserSlots()
    a1 = slots.take("alice", 2)
    a2 = slots.take("alice", 2)
    assert a1 is not None and a2 is not None
    assert slots.take("alice", 2) is None and slots.full("alice", 2)
    assert not slots.full("bob", 2) and not slots.full("alice", 3)
    slots.free(a1)
    assert not slots.full("alice", 2)
    slots.free(a2)


def test_a_killed_holders_slots_free_themselves():
    """A forked child (a worker) takes alice's only slot: the parent sees it taken;
    SIGKILL the child and the slot is free, with nothing to clean up."""
    slots = UserSlots()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            slots.take("alice", 1)
            os.write(w, b"x")
            signal.pause()
        finally:
            os._exit(1)
    os.close(w)
    assert os.read(r, 1) == b"x"
    os.close(r)
    assert slots.full("alice", 1) and slots.take("alice", 1) is None
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert not slots.full("alice", 1)
