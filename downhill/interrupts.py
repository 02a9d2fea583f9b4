"""Ctrl-C at safe points: SIGINT is held while the library changes its state.

A Ctrl-C that lands inside a compiled step, in the middle of the loop's
bookkeeping or inside PyTensor's compiler cannot be raised where it lands:
Numba turns it into a ``SystemError``, the compiler prints it and carries
on, and a step applied without its update count breaks an exact resume.
While :data:`SIGINT` is *held* its handler only records the interrupt; the
training loop asks :meth:`Sigint.check` at its safe points (after a whole
step and its bookkeeping, after a compilation, between validation batches)
and the recorded interrupt is raised there as ``KeyboardInterrupt``. Code of
the caller's that the loop runs (a callable dataset) runs *unheld*, so a
Ctrl-C there raises at once, as it would without downhill: nothing of the
library's is half-done then.

The handler is installed only in the main thread, and only while Python's
default handler (:func:`signal.default_int_handler`) is in place: a program
that installed its own SIGINT handler, or ignores SIGINT, keeps it.
"""

import contextlib
import signal
import threading

__all__ = ["Sigint", "SIGINT"]


class Sigint:
    """The process's SIGINT, held at nesting depth > 0 (main thread only).

    Attributes
    ----------
    pending : bool
        A Ctrl-C came while held and has not been raised yet.
    """

    def __init__(self):
        self.pending = False
        self._depth = 0
        # inside the caller's code: raise at once (call_unheld, and the training
        # loop around its yield, where it adds to this count itself: once per update)
        self._unheld = 0
        self._previous = None  # the handler to put back; None: not installed

    def _handler(self, signum, frame):
        if self._unheld:
            raise KeyboardInterrupt
        self.pending = True

    @staticmethod
    def _main():
        return threading.current_thread() is threading.main_thread()

    def hold(self):
        """Start holding SIGINT (nestable); install the handler at depth 1."""
        if not self._main():
            return
        if self._depth == 0 and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.default_int_handler
            signal.signal(signal.SIGINT, self._handler)
        self._depth += 1

    def release(self, deliver=True):
        """Stop holding SIGINT; at depth 0 put the previous handler back.

        Parameters
        ----------
        deliver : bool, optional
            At depth 0, raise a pending interrupt as ``KeyboardInterrupt``
            (else forget it: the block is ending with another exception).
        """
        if not self._main():
            return
        self._depth -= 1
        if self._depth == 0:
            if self._previous is not None:
                signal.signal(signal.SIGINT, self._previous)
                self._previous = None
            if deliver:
                self.check()
            else:
                self.discard()

    def check(self):
        """A safe point: raise ``KeyboardInterrupt`` if a Ctrl-C is pending."""
        if self.pending and self._main():
            self.pending = False
            raise KeyboardInterrupt

    def discard(self):
        """Forget a pending interrupt (the call it would end is ending anyway).

        Returns
        -------
        bool
            Whether one was pending.
        """
        pending, self.pending = self.pending, False
        return pending

    @contextlib.contextmanager
    def held(self):
        """Hold SIGINT for a block; a Ctrl-C during it is raised at its end."""
        self.hold()
        try:
            yield self
        except BaseException:
            self.release(deliver=False)
            raise
        self.release()

    def call_unheld(self, fn, *args):
        """Call the caller's code ``fn(*args)``: a Ctrl-C during it raises at once.

        Parameters
        ----------
        fn : callable
            The function.
        *args
            Its arguments.

        Returns
        -------
        object
            What ``fn`` returns.
        """
        self._unheld += 1
        try:
            self.check()
            return fn(*args)
        finally:
            self._unheld -= 1

    @property
    def depth(self):
        """int: How many holds are in force (0: SIGINT is not held)."""
        return self._depth


#: The one instance: SIGINT belongs to the process.
SIGINT = Sigint()
