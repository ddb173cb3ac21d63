"""Fixtures of the observability tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.otlp_receiver import OtlpReceiver


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP receiver on 127.0.0.1 that keeps every span exported to it."""
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()
