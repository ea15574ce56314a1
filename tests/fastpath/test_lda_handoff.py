"""The pipe's engine suite (tests/engine/test_lda.py) a second time, through the
fast path: every test there runs here with env.engine = mailslot-lda-front and a
mailslot-handoffd of the test user listening, so options, exit codes, stderr (-e),
-p, -m, -d, -o and the limits (ulimit -f) are checked on both paths.

Left out: the two import-budget tests, which run the Python entry script under
python3 -X importtime (the front is a C binary; the worker imports nothing per
delivery that the server did not preload).

Each test must also have been handed off: the fixture counts the log lines
marked <handoff> and the ones not marked, and a test whose deliveries all went
the ordinary way fails (a test that delivers only with -k or as root is the
exception: those take the ordinary path by design). Every test runs with
max_use 1 and with the default (conftest.py); with the default, the server's log
must show no worker that was "not reused" (a delivery left something behind),
except after a test that lowers a hard limit on purpose.
"""

import os
import re

import pytest

import tests.engine.test_lda as pipe_suite
from tests.engine.test_lda import *  # noqa: F401,F403  (the suite, collected here)
from tests.support import needs_root

pytestmark = needs_root

# Tests that take the ordinary path on purpose, and why.
ORDINARY_BY_DESIGN = {
    "test_root_is_refused": "root: the front never hands off for uid 0",
}
# Tests whose delivery lowers a hard resource limit (sh's ulimit sets both): their
# worker cannot be reused, and says so.
LOWERS_A_HARD_LIMIT = {"test_file_size_limit_is_named"}
del test_plain_path_imports_nothing_heavy  # noqa: F821 (python3 -X importtime on the entry)
del test_plain_path_import_budget  # noqa: F821


@pytest.fixture
def env(installed, mail_users, tmp_path_factory, front, start_server, request,
        monkeypatch):
    monkeypatch.setattr(pipe_suite, "LOG_PID", r"<\d+><handoff>")
    inner = pipe_suite.env.__wrapped__(installed, mail_users, tmp_path_factory)
    e = next(inner)
    e.engine = front.front
    server = start_server(e.user)
    e.server = server
    yield e
    name = request.node.originalname
    marked = unmarked = 0
    if os.path.exists(e.log):
        for line in open(e.log, errors="replace"):
            if re.search(r"^\S+ \S+ \S+ lda\([^)]*\)<\d+><handoff>: ", line):
                marked += 1
            elif re.search(r"lda\([^)]*\)<\d+>: ", line):
                unmarked += 1
    try:
        next(inner)
    except StopIteration:
        pass
    # With reuse, every worker must stay reusable after the suite's deliveries (a
    # leaked descriptor, a handler left behind... would end it: "not reused"),
    # except where the test lowers a hard limit on purpose.
    log = server.stop()
    if request.node.callspec.params.get("worker_max_use") != 1:
        if name in LOWERS_A_HARD_LIMIT:
            assert "the hard limit was lowered" in log, log
        else:
            assert "not reused" not in log, f"{name}: {log}"
    if name not in ORDINARY_BY_DESIGN and unmarked and not marked:
        pytest.fail(f"{name}: {unmarked} log lines, none from the fast path")
