"""A sendmail_path for dovecot-lda that keeps what it is given: each call leaves
<n>.args (its options) and <n>.msg (the message) in a world-writable spool, so the
tests can compare Dovecot's outgoing mail with mailslot's."""

import os
import shutil

from tests.support import world_tempdir


class CapturingSendmail:
    def __init__(self, prefix):
        self.spool = world_tempdir(prefix)
        os.chmod(self.spool, 0o777)
        self.path = os.path.join(self.spool, "capture")
        with open(self.path, "w") as f:
            f.write(f"#!/bin/sh\nn=$(date +%s%N)\necho \"$@\" > {self.spool}/$n.args\n"
                    f"cat > {self.spool}/$n.msg\n")
        os.chmod(self.path, 0o755)

    def sent(self):
        """[(envelope sender, "" for <>; recipients; message bytes)] in call order."""
        out = []
        for name in sorted(n for n in os.listdir(self.spool) if n.endswith(".args")):
            with open(os.path.join(self.spool, name)) as f:
                args = f.read().split()
            with open(os.path.join(self.spool, name[:-5] + ".msg"), "rb") as f:
                data = f.read()
            # dovecot-lda calls sendmail_path -i -f <sender> -- <recipients...>
            assert args[:2] == ["-i", "-f"] and args[3] == "--", args
            out.append(("" if args[2] == "<>" else args[2], args[4:], data))
        return out

    def cleanup(self):
        shutil.rmtree(self.spool, ignore_errors=True)
