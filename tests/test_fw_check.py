"""The pieces of `make firmware-check`: mpy-cross, pyright against the ESP32 stubs, and
the core's differential trace (CPython vs the real MicroPython VM at CORE_HEAP)."""
import pytest

from tests import firmware_check
from tests.vm import CORE_HEAP, needs_micropython


def test_every_device_file_compiles_with_mpy_cross():
    ok, message = firmware_check.check_mpy_cross()
    assert ok, message
    names = {p.name for p in firmware_check.device_files()}
    assert "core.py" in names and not any(n.startswith("host_") for n in names)


@pytest.mark.skipif(firmware_check.pyright_available() is not None,
                    reason=str(firmware_check.pyright_available()))
def test_pyright_type_checks_firmware_against_esp32_stubs():
    ok, message = firmware_check.check_pyright()
    assert ok, message


@needs_micropython
@pytest.mark.micropython
def test_differential_trace_cpython_equals_micropython_on_a_small_heap():
    cpython = firmware_check.run_trace("cpython", steps=1500)
    vm = firmware_check.run_trace("micropython", steps=1500, heapsize=CORE_HEAP)
    lines = cpython.splitlines()
    assert len(lines) > 1000 and lines[-1].startswith("END")
    kinds = {line.split(" ")[2][2:].split("'")[0] for line in lines[:-1]}
    assert {"send", "resend", "acked", "gnss", "haptic", "persist"} <= kinds
    assert vm == cpython


@needs_micropython
@pytest.mark.micropython
def test_trace_detects_a_difference():
    """The comparison is not vacuous: the real VM, given another seed, gives a different
    trace from CPython's (and a whole one: it ran to the end)."""
    a = firmware_check.run_trace("cpython", steps=200)
    code = firmware_check.TRACE_SCRIPT
    assert "seed = [12345]" in code
    try:
        firmware_check.TRACE_SCRIPT = code.replace("seed = [12345]", "seed = [54321]")
        b = firmware_check.run_trace("micropython", steps=200, heapsize=CORE_HEAP)
    finally:
        firmware_check.TRACE_SCRIPT = code
    assert b.splitlines()[-1].startswith("END") and len(b.splitlines()) > 100
    assert a != b


def test_main_prints_a_summary_and_fails_on_failure(monkeypatch, capsys):
    monkeypatch.setattr(firmware_check, "CHECKS",
                        (("good", lambda: (True, "fine")), ("bad", lambda: (False, "broken")),
                         ("absent", lambda: (None, "no tool"))))
    assert firmware_check.main([]) == 1
    out = capsys.readouterr().out
    assert "good" in out and "FAIL  broken" in out and "SKIP  no tool" in out
