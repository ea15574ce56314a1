"""passwd-files kept in memory by a long-lived process (mailslot-lmtpd), re-read when changed.

    lookup.PASSWD_FILE_CACHE = PasswdFileCache()       # the server, once
    lines = cache.lines_of("/etc/mailslot/users", b"bob")   # [(line number, line)]

Each lookup costs one stat() of the file. The file is read again whenever that stat
differs from the one of the copy in memory -- device, inode, size, mtime or ctime --
so a user removed or changed, or a file replaced by rename, is seen at the next
lookup. That is how Dovecot's passwd-file driver behaves (it re-reads a changed
file); it is not a time-to-live cache, which would accept a removed user until it
expired. A file whose mtime or ctime is within RACY_SECONDS of the moment it was
read is used for that lookup but not kept: on filesystems with whole-second
timestamps (ext3 and others) a second change within the same second would leave
the stat unchanged ("racily clean", as git calls it).

What is kept is only an index of the lines by user name; lookup.py parses the
lines of the one user it looks for, as it does reading the file itself, so the
answers (and the warnings for duplicate or malformed lines) are the same.

Limits: a file larger than MAX_FILE_BYTES is not kept (lookup.py streams it per
lookup, as the pipe does); at most MAX_TOTAL_BYTES of files are kept -- adding one
past that forgets the others -- so memory stays bounded whatever the userdb
blocks name (per-domain files are one entry each).

Errors: none raised. A file that cannot be stat()ed, opened or read, or that
changed while it was read, gives None: the caller then reads the file itself and
reports the error exactly as without the cache.

Security: the path comes from the settings (per-domain paths are cut at '/' by
lookup._expand_path before they get here); the file is opened as the caller
would open it. Threads: entries are replaced whole (one dict assignment), never
changed in place, so concurrent lookups see an old or a new copy, never a mix.
"""

import os
import time

# Whole-second timestamps: a change less than this long before the read could be
# followed by another with the same stat (see above).
RACY_SECONDS = 2
# Bigger files are streamed per lookup instead (an index costs a few times the file).
MAX_FILE_BYTES = 1024 * 1024
MAX_TOTAL_BYTES = 4 * 1024 * 1024


def _stamp(st):
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class PasswdFileCache:
    """path -> (stamp, size, {user name bytes: ((line number, line bytes), ...)})."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self.loads = 0          # files read (tests count them)
        self._files = {}

    def lines_of(self, path, key):
        """The (line number, line) pairs of path whose user name is key (bytes), line
        endings stripped; None when the caller must read the file itself."""
        try:
            st = os.stat(path)
        except OSError:
            self._files.pop(path, None)
            return None
        entry = self._files.get(path)
        if entry is None or entry[0] != _stamp(st):
            entry = self._load(path)
            if entry is None:
                return None
        return entry[2].get(key, ())

    def _load(self, path):
        try:
            with open(path, "rb") as stream:
                st = os.fstat(stream.fileno())
                if st.st_size > MAX_FILE_BYTES:
                    self._files.pop(path, None)
                    return None
                data = stream.read(MAX_FILE_BYTES + 1)
        except OSError:
            return None
        if len(data) != st.st_size:
            return None         # changed while we read it: no copy, read it directly
        self.loads += 1
        index = {}
        for number, line in enumerate(data.split(b"\n"), 1):
            if line.endswith(b"\r"):
                line = line[:-1]
            if line:
                name = line.partition(b":")[0]
                index[name] = index.get(name, ()) + ((number, line),)
        entry = (_stamp(st), st.st_size, index)
        now = self.clock()
        if now - st.st_mtime >= RACY_SECONDS and now - st.st_ctime >= RACY_SECONDS:
            kept = sum(e[1] for p, e in self._files.items() if p != path)
            if kept + st.st_size > MAX_TOTAL_BYTES:
                self._files = {}
            self._files[path] = entry
        else:
            self._files.pop(path, None)
        return entry
