"""Shared test helpers."""

from __future__ import annotations

import pytest


@pytest.fixture
def record_recurrent():
    """``record_recurrent(model) -> list``: from then on, every output of the model's
    ``recurrent_inference`` (what the search's tree cache computed) is appended to the list."""

    def attach(model) -> list:
        outputs = []
        original = model.recurrent_inference

        def spy(*args, **kwargs):
            out = original(*args, **kwargs)
            outputs.append(out)
            return out

        model.recurrent_inference = spy
        return outputs

    return attach
