"""cpuid: CPU vendor, brand and feature bits (from the kernel's /proc/cpuinfo view of CPUID)."""

from __future__ import annotations

from collections.abc import Iterator

from .cpu_info import parse_cpuinfo
from .procfs import GONE, read_file
from .spec import Column, QueryContext, Row, TableError, TableSpec
from .text import decode

__all__ = ["FEATURES", "SPEC", "generate"]

#: (input EAX, output register) -> [(Linux flag name, bit)]: the CPUID leaves osquery reports.
FEATURES: dict[tuple[str, str], tuple[tuple[str, int], ...]] = {
    ("0x1", "edx"): (
        ("fpu", 0),
        ("vme", 1),
        ("de", 2),
        ("pse", 3),
        ("tsc", 4),
        ("msr", 5),
        ("pae", 6),
        ("mce", 7),
        ("cx8", 8),
        ("apic", 9),
        ("sep", 11),
        ("mtrr", 12),
        ("pge", 13),
        ("mca", 14),
        ("cmov", 15),
        ("pat", 16),
        ("pse36", 17),
        ("pn", 18),
        ("clflush", 19),
        ("dts", 21),
        ("acpi", 22),
        ("mmx", 23),
        ("fxsr", 24),
        ("sse", 25),
        ("sse2", 26),
        ("ss", 27),
        ("ht", 28),
        ("tm", 29),
        ("ia64", 30),
        ("pbe", 31),
    ),
    ("0x1", "ecx"): (
        ("pni", 0),
        ("pclmulqdq", 1),
        ("dtes64", 2),
        ("monitor", 3),
        ("ds_cpl", 4),
        ("vmx", 5),
        ("smx", 6),
        ("est", 7),
        ("tm2", 8),
        ("ssse3", 9),
        ("cid", 10),
        ("sdbg", 11),
        ("fma", 12),
        ("cx16", 13),
        ("xtpr", 14),
        ("pdcm", 15),
        ("pcid", 17),
        ("dca", 18),
        ("sse4_1", 19),
        ("sse4_2", 20),
        ("x2apic", 21),
        ("movbe", 22),
        ("popcnt", 23),
        ("tsc_deadline_timer", 24),
        ("aes", 25),
        ("xsave", 26),
        ("osxsave", 27),
        ("avx", 28),
        ("f16c", 29),
        ("rdrand", 30),
        ("hypervisor", 31),
    ),
    ("0x7", "ebx"): (
        ("fsgsbase", 0),
        ("tsc_adjust", 1),
        ("sgx", 2),
        ("bmi1", 3),
        ("hle", 4),
        ("avx2", 5),
        ("smep", 7),
        ("bmi2", 8),
        ("erms", 9),
        ("invpcid", 10),
        ("rtm", 11),
        ("mpx", 14),
        ("avx512f", 16),
        ("avx512dq", 17),
        ("rdseed", 18),
        ("adx", 19),
        ("smap", 20),
        ("avx512ifma", 21),
        ("clflushopt", 23),
        ("clwb", 24),
        ("avx512pf", 26),
        ("avx512er", 27),
        ("avx512cd", 28),
        ("sha_ni", 29),
        ("avx512bw", 30),
        ("avx512vl", 31),
    ),
    ("0x80000001", "edx"): (("syscall", 11), ("nx", 20), ("mmxext", 22), ("pdpe1gb", 26), ("rdtscp", 27), ("lm", 29)),
    ("0x80000001", "ecx"): (
        ("lahf_lm", 0),
        ("cmp_legacy", 1),
        ("svm", 2),
        ("abm", 5),
        ("sse4a", 6),
        ("misalignsse", 7),
        ("3dnowprefetch", 8),
        ("xop", 11),
        ("fma4", 16),
        ("tbm", 21),
    ),
}


def generate(context: QueryContext) -> Iterator[Row]:
    """Vendor and brand rows, then one row per known feature bit with value "1" or "0"."""
    path = f"{context.paths.proc}/cpuinfo"
    try:
        blocks = parse_cpuinfo(decode(read_file(path)))
    except GONE as exc:
        raise TableError(f"table cpuid: cannot read {path}: {exc}") from exc
    first = blocks[0] if blocks else {}
    flags = set(first.get("flags", "").split())
    yield {
        "feature": "vendor",
        "value": first.get("vendor_id", ""),
        "output_register": "ebx,edx,ecx",
        "output_bit": 0,
        "input_eax": "0x0",
    }
    yield {
        "feature": "product_name",
        "value": first.get("model name", ""),
        "output_register": "eax,ebx,ecx,edx",
        "output_bit": 0,
        "input_eax": "0x80000002",
    }
    for (eax, register), bits in FEATURES.items():
        for name, bit in bits:
            yield {
                "feature": name,
                "value": "1" if name in flags else "0",
                "output_register": register,
                "output_bit": bit,
                "input_eax": eax,
            }


SPEC = TableSpec(
    name="cpuid",
    description="Useful CPU features from the cpuid ASM call.",
    columns=(
        Column("feature", "TEXT", "Present feature flags"),
        Column("value", "TEXT", "Bit value or string"),
        Column("output_register", "TEXT", "Register used to for feature value"),
        Column("output_bit", "INTEGER", "Bit in register value for feature value"),
        Column("input_eax", "TEXT", "Value of EAX used"),
    ),
    generate=generate,
    examples=("SELECT feature, value FROM cpuid WHERE feature IN ('vendor', 'aes', 'avx2')",),
)
