"""Run as the test user by the interop tests: save messages with mailslot's Storage.

    python3 saver.py <mail_location> <home> <json plan>

The plan is a list of steps, each {"op": "save"|"create"|"subscribe", "name": [...],
"body": str, "flags": [...], "link_previous": bool}, or {"op": "fsize_limit",
"file": <path below home>, "room": n}: from then on RLIMIT_FSIZE is that file's
size plus n bytes (a real `ulimit -f` for the saves that follow). For every save it prints one
JSON line: {"mailbox", "uid", "path", "size", "vsize", "uid_error", "warnings"}.
The message source is tests/message_source.py's BytesSource (bytes in memory).
"""

import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from mailslot.storage import open_storage  # noqa: E402
from tests.message_source import BytesSource  # noqa: E402


def main():
    location, home, plan = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    storage = open_storage(location, user=os.environ.get("USER", "test"), home=home,
                           hostname=socket.gethostname())
    previous = None
    for step in plan:
        name = tuple(step.get("name", ()))
        if step["op"] == "create":
            storage.create_mailbox(name)
        elif step["op"] == "subscribe":
            storage.subscribe(name)
        elif step["op"] == "fsize_limit":
            import resource
            import signal
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # Python's default
            limit = os.stat(os.path.join(home, step["file"])).st_size + step["room"]
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        elif step["op"] == "save":
            stored = previous if step.get("link_previous") else None
            source = BytesSource(step["body"].encode("utf-8"), stored)
            result = storage.save(name, source, flags=tuple(step.get("flags", ())))
            previous = result.path
            print(json.dumps({"mailbox": result.mailbox, "uid": result.uid,
                              "path": result.path, "size": result.size,
                              "vsize": result.vsize, "uid_error": result.uid_error,
                              "warnings": list(getattr(result, "warnings", ()))}))
        else:
            raise SystemExit(f"unknown op {step['op']!r}")


if __name__ == "__main__":
    main()
