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
