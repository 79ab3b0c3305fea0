"""cpuid: vendor and feature rows against the live /proc/cpuinfo flags."""

from __future__ import annotations

from pathlib import Path

from tables import cpuid
from tables.sqlite import Database


def test_live_flags() -> None:
    rows = {
        r[0]: r
        for r in Database([cpuid.SPEC])
        .execute("SELECT feature, value, output_register, output_bit, input_eax FROM cpuid")
        .rows
    }
    text = Path("/proc/cpuinfo").read_text()
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    vendor = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("vendor_id")), "")
    assert rows["vendor"][1] == vendor
    for name in ("fpu", "sse2", "avx2", "aes", "lm"):
        assert rows[name][1] == ("1" if name in flags else "0")
    assert rows["sse2"][2:] == ("edx", 26, "0x1")
    assert rows["avx2"][2:] == ("ebx", 5, "0x7")


def test_fixture(tmp_path: Path) -> None:
    from tables.spec import HostPaths

    (tmp_path / "cpuinfo").write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2\n\n")
    rows = dict(
        Database([cpuid.SPEC], paths=HostPaths(proc=str(tmp_path))).execute("SELECT feature, value FROM cpuid").rows
    )
    assert rows["vendor"] == "GenuineIntel" and rows["sse2"] == "1" and rows["avx"] == "0"
