"""The stop flag that SIGINT/SIGTERM set during training."""
from __future__ import annotations

import os
import signal

import pytest

from unetfamily.engine.loop import StopFlag


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_sets_the_flag_and_the_old_handler_comes_back(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    stop = StopFlag()
    with stop.catching_signals():
        os.kill(os.getpid(), sig)  # handled by the flag, not by ending the test process
        assert stop.requested
    assert signal.getsignal(sig) is before
