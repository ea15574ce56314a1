"""The spool: a message written once to an unnamed file, read back any number of times.

open_spool() makes an O_TMPFILE in the temp directory (mail_temp_dir), else a memfd;
Spool(source, temp_dir) fills it from a message source (anything with
write_to(fd) -> (size, vsize)) and reads it back in COPY_CHUNK pieces.

Errors: StorageError when the spool cannot be written (named, with the directory),
or when its size disagrees with what the source reported.

Security: the file has no name, so nothing is left behind whatever kills us and no
other process can open it by path; mode SPOOL_MODE (private to the user).
"""

import os

from ..errors import StorageError
from .dirs import storage_error

# A spool file's mode: private to the delivering user.
SPOOL_MODE = 0o600
# One read back from the spool.
COPY_CHUNK = 256 * 1024


class Spool:
    """The message once, as the source wrote it, readable any number of times."""

    def __init__(self, source, temp_dir):
        self.fd = open_spool(temp_dir)
        try:
            self.size, self.vsize = self._fill(source, temp_dir)
        except BaseException:
            self.close()
            raise

    def _fill(self, source, temp_dir):
        try:
            size, vsize = source.write_to(self.fd)
            real = os.fstat(self.fd).st_size
        except OSError as err:
            raise storage_error("spooling the message in", temp_dir, err) from None
        if real != size:
            raise StorageError(f"message source reported {size} bytes but the spool "
                               f"file has {real}")
        return size, vsize

    def chunks(self):
        offset = 0
        while True:
            data = os.pread(self.fd, COPY_CHUNK, offset)
            if not data:
                return
            offset += len(data)
            yield data

    def close(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def __del__(self):
        self.close()


def open_spool(temp_dir):
    """An unnamed file for the spool: O_TMPFILE in temp_dir, else a memfd."""
    try:
        # Why unnamed: nothing is left behind, whatever kills us.
        return os.open(temp_dir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, SPOOL_MODE)
    except (OSError, AttributeError):
        return os.memfd_create("mailslot-spool", os.MFD_CLOEXEC)
