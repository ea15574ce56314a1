"""fileinto's run-time half: the handler the interpreter runs (see fileinto.py).

Kept apart from the command's definition so that running a cached program does
not import the compiler. Errors: an invalid (non UTF-8) folder name made at run
time is a run error, as in Pigeonhole.
"""

from ..interpreter import HANDLERS
from ..result import StoreAction
from .core_runtime import make_effects


def valid_utf8(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def run_fileinto(it, op):
    folder = it.expand(op[2])
    if not valid_utf8(folder):
        # Pigeonhole prints the name as it is here (no sanitizing).
        it.error("fileinto command: invalid folder name `%s' specified: invalid utf-8"
                 % folder)
    action = StoreAction(it.location(), folder)
    if it.ctx.message.edited:
        action.header = it.ctx.message.snapshot()
    it.result.add(it, action, make_effects(it, op[3]))


HANDLERS["fileinto"] = run_fileinto
