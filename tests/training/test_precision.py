"""Mixed precision only where the hardware computes it: emulated bfloat16 is slower than float32."""

import torch

from training import loop


def test_bf16_is_detected_from_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert loop.cpu_has_bf16(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f\n")
    assert not loop.cpu_has_bf16(cpuinfo)
    assert not loop.cpu_has_bf16(tmp_path / "missing")


def test_mixed_precision_is_off_on_a_cpu_without_bf16(monkeypatch):
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: False)
    assert not loop.mixed_precision(torch.device("cpu"), True)._enabled
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: True)
    context = loop.mixed_precision(torch.device("cpu"), True)
    assert context._enabled and context.fast_dtype == torch.bfloat16
    assert not loop.mixed_precision(torch.device("cpu"), False)._enabled
