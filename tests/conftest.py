import os
import sys

import numpy as np
import pytest

# The JAX tests shard over 4 CPU devices, which XLA makes only if told before
# jax is first imported; nothing else in the suite uses jax, and the flag
# changes nothing but the number of CPU devices jax reports.
JAX_DEVICES = 4
if "jax" not in sys.modules:
    _flag = f"--xla_force_host_platform_device_count={JAX_DEVICES}"
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler for the test, whatever this process inherited.

    A process started in the background by a non-interactive shell (``cmd &``
    in a script, some CI runners) inherits SIGINT *ignored*, and Python then
    leaves it ignored; downhill rightly keeps a disposition it did not set
    (see :mod:`downhill.interrupts`), so a test that sends itself SIGINT to
    check what Ctrl-C does must first put the default handler in place.
    """
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
