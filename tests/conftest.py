"""Shared pytest configuration: fixed, logged seeds and the list of available simulators."""

import os

import pytest

from llmaccel.sim.tools import available_simulators

SIMULATORS = available_simulators()


def pytest_report_header(config):
    return [f"simulators: {', '.join(SIMULATORS)}",
            f"soak: {'on' if os.environ.get('LLMACCEL_SOAK') == '1' else 'off'}"]


@pytest.fixture
def seed(request) -> int:
    """A fixed seed per test (derived from its name), printed so a failure can be replayed."""
    import zlib

    s = zlib.crc32(request.node.nodeid.encode()) & 0x7FFFFFFF
    print(f"seed={s}")
    return s
