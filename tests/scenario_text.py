"""Scenario files the CLI tests write: ten virtual minutes with one panic press, a run of a
fraction of a second."""

SHORT_PANIC = """
[scenario]
name = "short-panic"
description = "ten minutes, one panic press"
duration_s = 600
seed = 21

[[device]]
id = 77
location = [52.0907, 5.1214]
button = [{ at_s = 120, hold_ms = 2000 }]
"""

# The same with a second, quiet device (two devices, two keys).
TWO_DEVICES = SHORT_PANIC + """
[[device]]
id = 78
location = [52.0907, 5.1214]
"""
