import os

from hypothesis import HealthCheck, settings

from tests.mpy_board import board  # noqa: F401 (a fixture: the MicroPython REPL on a pty)

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
