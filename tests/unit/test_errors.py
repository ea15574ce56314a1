"""errors.py: the one failure table, over the whole tree (the classes built at import
and those built when first named)."""

import os
import subprocess
import sys

import pytest

from mailslot import errors

# (class name, exit code, LMTP code, DSN status): what each failure answers.
ROWS = [
    ("MailslotError", 75, 451, "4.3.0"),
    ("TemporaryError", 75, 451, "4.3.0"),
    ("ConfigError", 75, 451, "4.3.5"),
    ("StorageError", 75, 451, "4.2.0"),
    ("MailboxNameError", 75, 451, "4.2.0"),        # a StorageError without its own row
    ("MailboxNotFoundError", 75, 451, "4.2.0"),
    ("UsageError", 64, 451, "4.3.5"),
    ("UserUnknownError", 67, 550, "5.1.1"),
    ("RejectedError", 77, 550, "5.7.1"),
    ("UserdbError", 75, 451, "4.3.0"),
    ("PrivilegeError", 75, 451, "4.3.0"),
    ("MessageError", 75, 451, "4.3.0"),
    ("LogError", 75, 451, "4.3.0"),
    ("SendError", 75, 451, "4.3.0"),
    ("QuotaExceededError", 75, 452, "4.2.2"),
    ("QuotaRejectedError", 77, 552, "5.2.2"),
    ("SieveError", 75, 451, "4.3.0"),
]


@pytest.mark.parametrize("name, code, lmtp, dsn", ROWS)
def test_each_failure_answers_its_row(name, code, lmtp, dsn):
    cls = getattr(errors, name)
    exc = cls("x")
    row = errors.failure_for(exc)
    assert (row.exit_code, row.lmtp_code, row.dsn_status) == (code, lmtp, dsn)
    assert errors.exit_code_for(exc) == code
    assert isinstance(exc, errors.MailslotError)
    # One class for each name, however it is reached; pickled by its name.
    import pickle
    assert type(pickle.loads(pickle.dumps(exc))) is cls
    namespace = {}
    exec(f"from mailslot.errors import {name} as found", namespace)
    assert namespace["found"] is cls


def test_a_subclass_answers_as_its_ancestor():
    class Refined(errors.QuotaExceededError):
        pass
    assert errors.failure_for(Refined("x")).lmtp_code == 452


def test_another_packages_class_of_the_same_name_is_unexpected():
    # The table is by name; only the tree's own classes count.
    UsageError = type("UsageError", (Exception,), {})
    assert errors.failure_for(UsageError("x")) is errors.UNEXPECTED
    assert errors.exit_code_for(KeyError("x")) == 75


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        errors.NoSuchError
    with pytest.raises(ImportError):
        exec("from mailslot.errors import NoSuchError", {})


def test_the_other_kinds_are_built_only_when_one_is_named():
    code = ("import mailslot.errors as e; "
            "from mailslot.errors import ConfigError, StorageError; "
            "a = 'LogError' in vars(e); b = e.LogError; "
            "from mailslot.errors import LogError, SieveError; "
            "print(a, 'UsageError' in vars(e), b is LogError, "
            "LogError.__module__ + '.' + LogError.__qualname__)")
    pyside = os.path.dirname(os.path.dirname(errors.__file__))
    out = subprocess.run([sys.executable, "-I", "-S", "-c",
                          f"import sys; sys.path.insert(0, {pyside!r}); " + code],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True", "mailslot.errors.LogError"]


def test_one_class_per_name_across_threads():
    # mailslot-lmtpd's threads may name a class first at the same moment.
    code = ("import threading, mailslot.errors as e; seen = []; "
            "go = threading.Barrier(8); "
            "ts = [threading.Thread(target=lambda: (go.wait(), seen.append(e.SendError))) "
            "for _ in range(8)]; [t.start() for t in ts]; [t.join() for t in ts]; "
            "print(len({id(c) for c in seen}), len(seen))")
    pyside = os.path.dirname(os.path.dirname(errors.__file__))
    for _ in range(5):
        out = subprocess.run([sys.executable, "-I", "-S", "-c",
                              f"import sys; sys.path.insert(0, {pyside!r}); " + code],
                             capture_output=True, text=True, check=True).stdout
        assert out.split() == ["1", "8"]
