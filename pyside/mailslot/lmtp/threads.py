"""The thread pools of mailslot-lmtpd: a bounded set of threads running submitted calls.

    pool = Pool(16, "deliver")
    task = pool.submit(fn, *args)       # an idle thread runs it, or a new one (up to 16)
    task.result()                       # waits; returns fn's value or raises its error
    pool.map(fn, xs, ys)                # [fn(x, y) ...] in order, side by side
    pool.shutdown()                     # runs what was submitted, then the threads end

The server keeps two (server.py: the deliveries of a transaction with several
recipients, and the directory fsyncs that overlap a delivery's uidlist sync).

Why not concurrent.futures.ThreadPoolExecutor: importing it loads the logging
package too, 1.6 MiB of every worker process's memory for two pools
(docs/benchmarks.md, "LMTP memory"). This pool does what the server used of it --
threads started on demand up to the bound, an idle one reused first, results in
order -- and nothing else (no cancel, no callbacks, no timeouts).

Errors: an exception raised by a call is kept and raised again by result(); it never
ends the thread. A thread that cannot be started (RuntimeError) propagates from
submit() when no thread at all is there to run the call.

Security: none of its own; the calls run with the process's privileges.
"""

import threading

# The C queue behind queue.SimpleQueue, without queue.py's own imports.
from _queue import SimpleQueue


class Task:
    """One submitted call: result() waits for it."""

    __slots__ = ("_done", "_value", "_error")

    def __init__(self):
        # Held until the call has run: a plain lock may be released by another thread.
        self._done = threading.Lock()
        self._done.acquire()
        self._value = self._error = None

    def result(self):
        with self._done:
            pass
        if self._error is not None:
            raise self._error
        return self._value


class Pool:
    """Up to `size` threads named name_N, started when a call finds none idle."""

    def __init__(self, size, name):
        self.size, self.name = size, name
        self._queue = SimpleQueue()
        self._idle = threading.Semaphore(0)     # one per thread waiting for work
        self._lock = threading.Lock()           # guards _threads
        self._threads = []

    def submit(self, fn, *args):
        task = Task()
        self._queue.put((task, fn, args))
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if len(self._threads) < self.size:
                    thread = threading.Thread(target=self._work, daemon=True,
                                              name=f"{self.name}_{len(self._threads)}")
                    try:
                        thread.start()
                    except RuntimeError:
                        if not self._threads:
                            raise
                    else:
                        self._threads.append(thread)
        return task

    def map(self, fn, *iterables):
        """[fn(*args) for args in zip(*iterables)], the calls side by side."""
        tasks = [self.submit(fn, *args) for args in zip(*iterables)]
        return [task.result() for task in tasks]

    def shutdown(self):
        """Let the threads finish what was submitted, then wait for them to end."""
        self._queue.put(None)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()

    def _work(self):
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.put(None)           # the next thread ends too
                return
            task, fn, args = item
            try:
                task._value = fn(*args)
            except BaseException as exc:        # kept for result(), never lost
                task._error = exc
            finally:
                task._done.release()
            del item, task, fn, args            # nothing of the call kept while idle
            self._idle.release()
