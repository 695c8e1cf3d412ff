import pytest

from kexue.experiments._shared.fresh_process import call_in_fresh_process, reset_peak, status_bytes


def test_reset_peak_forgets_memory_already_freed():
    big = bytearray(200 * 2**20)
    big[::4096] = b"x" * len(big[::4096])  # touch every page
    del big
    assert status_bytes("VmHWM") - status_bytes("VmRSS") > 150 * 2**20
    reset_peak()
    assert status_bytes("VmHWM") - status_bytes("VmRSS") < 20 * 2**20


def test_a_failing_function_raises_with_its_error():
    with pytest.raises(RuntimeError, match="failed in a fresh process"):
        call_in_fresh_process("kexue.experiments._shared.fresh_process", "status_bytes",
                              field="VmNothing")
