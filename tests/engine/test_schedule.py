from __future__ import annotations

import pytest

from unetfamily.engine.schedule import lr_at


def test_warmup_then_cosine() -> None:
    assert lr_at(0, 100, 1.0, "cosine", warmup_steps=10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, "cosine", warmup_steps=10) == pytest.approx(1.0)
    assert lr_at(10, 100, 1.0, "cosine", warmup_steps=10) == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, "cosine", warmup_steps=10) == pytest.approx(0.5)
    assert lr_at(100, 100, 1.0, "cosine", warmup_steps=10, min_lr_ratio=0.1) == pytest.approx(0.1)


def test_poly_and_constant() -> None:
    assert lr_at(50, 100, 2.0, "poly", power=1.0) == pytest.approx(1.0)
    assert lr_at(50, 100, 2.0, "poly", power=2.0) == pytest.approx(0.5)
    assert lr_at(77, 100, 2.0, "constant") == 2.0


def test_time_used_moves_the_decay_on_but_never_back_nor_into_the_warmup() -> None:
    assert lr_at(20, 100, 1.0, "cosine", time_used=1.0) == pytest.approx(0.0)  # time is up: decayed
    assert lr_at(20, 100, 1.0, "cosine", time_used=0.5) == pytest.approx(0.5)  # time further along than steps
    assert lr_at(80, 100, 1.0, "cosine", time_used=0.1) == lr_at(80, 100, 1.0, "cosine")  # steps further along
    assert lr_at(3, 100, 1.0, "cosine", warmup_steps=10, time_used=0.9) == pytest.approx(0.4)  # warm-up unchanged
    assert lr_at(50, 100, 2.0, "constant", time_used=1.0) == 2.0
