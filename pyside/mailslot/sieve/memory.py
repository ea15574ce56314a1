"""The memory bound of a Sieve run (sieve_max_memory).

A run may hold one copy of the message (the host's buffer, which the delivery
needs anyway) plus what it builds from it: the parsed header view, the MIME part
tree, decoded body parts, match tables. Everything of that second kind that can
grow with the message is charged to the run's Budget before it is built;
charge() raises MemoryLimitExceeded when the total would pass the limit, and the
run ends as Pigeonhole ends a run that hits one of its limits: implicit keep,
with an error in the user's log and a pointer in the admin log.

Charges are estimates of Python's real cost (an object header per field, four
bytes a character for text that is not ASCII), deliberately on the high side.
Values that only live during one test are released after it (hold()).
Streaming keeps most of them small: the body test matches :contains and :is part
by part in pieces of STREAM_CHUNK bytes without building a part's whole text.

Errors: MemoryLimitExceeded (the interpreter reports it as a resource limit).
Security: this is what bounds the memory a sender can make a delivery use with a
hostile message, whatever the user's script.
"""

# The default of sieve_max_memory: with Python's own ~20 MiB this keeps a
# delivery's peak RSS under 64 MiB plus the message size.
DEFAULT_MAX_MEMORY = 32 << 20

# Decoding and matching work on pieces of this size (bytes of the message).
STREAM_CHUNK = 256 << 10

# Estimated cost of one parsed header field beyond its bytes (a tuple, two str
# objects, an index entry) and of one MIME part (the Part object, its fields).
FIELD_COST = 240
PART_COST = 1024


class MemoryLimitExceeded(Exception):
    """The run would use more memory than sieve_max_memory allows."""

    def __init__(self, what, need, limit):
        super().__init__(what)
        self.what = what
        self.need = need
        self.limit = limit

    def message(self):
        return ("execution exceeded memory limit: %s needs more than "
                "sieve_max_memory (%d bytes) allows" % (self.what, self.limit))


class Budget:
    """Memory charged to one run; limit 0 or None: unlimited."""

    __slots__ = ("limit", "used", "peak")

    def __init__(self, limit=DEFAULT_MAX_MEMORY):
        self.limit = limit or 0
        self.used = 0
        self.peak = 0

    def charge(self, nbytes, what):
        used = self.used + nbytes
        if self.limit and used > self.limit:
            raise MemoryLimitExceeded(what, used, self.limit)
        self.used = used
        if used > self.peak:
            self.peak = used

    def release(self, nbytes):
        self.used = max(0, self.used - nbytes)

    def hold(self, nbytes, what):
        """Context manager: charge nbytes for the duration of a block."""
        return _Hold(self, nbytes, what)


class _Hold:
    __slots__ = ("budget", "nbytes", "what")

    def __init__(self, budget, nbytes, what):
        self.budget, self.nbytes, self.what = budget, nbytes, what

    def __enter__(self):
        self.budget.charge(self.nbytes, self.what)
        return self

    def __exit__(self, *exc):
        self.budget.release(self.nbytes)
        return False


def text_cost(nbytes):
    """The most a str decoded from nbytes of the message can cost (UCS-4)."""
    return 4 * nbytes + 64
