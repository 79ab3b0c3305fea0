"""The audit architectures (``arch=`` in SYSCALL records) and their numbers for the calls rows are built from.

An ``arch`` value is ``AUDIT_ARCH_*`` from linux/audit.h: the ELF machine (``EM_*``) ORed with
``__AUDIT_ARCH_64BIT`` and ``__AUDIT_ARCH_LE``.  Syscall numbers come from each
architecture's kernel syscall table: arch/x86/entry/syscalls/syscall_{64,32}.tbl,
arch/arm/tools/syscall.tbl (EABI: its ``socketcall`` is OABI only, left out), arch/powerpc/kernel/syscalls/
syscall.tbl (ppc and ppc64 share it), arch/s390/kernel/syscalls/syscall.tbl (s390 and s390x
share it) and include/uapi/asm-generic/unistd.h (aarch64, riscv).  Where a table has no
``accept`` (i386, s390) programs reach it through ``socketcall(2)``.

x32 programs run under AUDIT_ARCH_X86_64 with ``__X32_SYSCALL_BIT`` set in the number; they
share x86_64's socket calls and have their own execve (520) and execveat (545).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "ARCHES",
    "AUDIT_ARCH_AARCH64",
    "AUDIT_ARCH_ARM",
    "AUDIT_ARCH_ARMEB",
    "AUDIT_ARCH_I386",
    "AUDIT_ARCH_PPC",
    "AUDIT_ARCH_PPC64",
    "AUDIT_ARCH_PPC64LE",
    "AUDIT_ARCH_RISCV32",
    "AUDIT_ARCH_RISCV64",
    "AUDIT_ARCH_S390",
    "AUDIT_ARCH_S390X",
    "AUDIT_ARCH_X86_64",
    "SOCKETCALL_CALLS",
    "SYSCALL_TABLES",
    "X32_SYSCALL_BIT",
    "Arch",
    "arch_name",
    "syscall_name",
]

AUDIT_ARCH_64BIT = 0x80000000
AUDIT_ARCH_LE = 0x40000000

# ELF machine numbers (linux/elf-em.h)
EM_386, EM_PPC, EM_PPC64, EM_S390, EM_ARM, EM_X86_64, EM_AARCH64, EM_RISCV = 3, 20, 21, 22, 40, 62, 183, 243

AUDIT_ARCH_X86_64 = EM_X86_64 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE  # 0xc000003e
AUDIT_ARCH_I386 = EM_386 | AUDIT_ARCH_LE  # 0x40000003
AUDIT_ARCH_AARCH64 = EM_AARCH64 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE  # 0xc00000b7
AUDIT_ARCH_ARM = EM_ARM | AUDIT_ARCH_LE  # 0x40000028
AUDIT_ARCH_ARMEB = EM_ARM  # 0x00000028
AUDIT_ARCH_PPC = EM_PPC  # 0x00000014
AUDIT_ARCH_PPC64 = EM_PPC64 | AUDIT_ARCH_64BIT  # 0x80000015
AUDIT_ARCH_PPC64LE = EM_PPC64 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE  # 0xc0000015
AUDIT_ARCH_S390 = EM_S390  # 0x00000016
AUDIT_ARCH_S390X = EM_S390 | AUDIT_ARCH_64BIT  # 0x80000016
AUDIT_ARCH_RISCV32 = EM_RISCV | AUDIT_ARCH_LE  # 0x400000f3
AUDIT_ARCH_RISCV64 = EM_RISCV | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE  # 0xc00000f3

X32_SYSCALL_BIT = 0x40000000

_X86_64 = {"execve": 59, "execveat": 322, "connect": 42, "bind": 49, "accept": 43, "accept4": 288}
_I386 = {"execve": 11, "execveat": 358, "connect": 362, "bind": 361, "accept4": 364, "socketcall": 102}
_ASM_GENERIC = {"execve": 221, "execveat": 281, "connect": 203, "bind": 200, "accept": 202, "accept4": 242}
_ARM = {"execve": 11, "execveat": 387, "connect": 283, "bind": 282, "accept": 285, "accept4": 366}
_POWERPC = {
    "execve": 11,
    "execveat": 362,
    "connect": 328,
    "bind": 327,
    "accept": 330,
    "accept4": 344,
    "socketcall": 102,
}
_S390 = {"execve": 11, "execveat": 354, "connect": 362, "bind": 361, "accept4": 364, "socketcall": 102}
_X32 = {"execve": 520, "execveat": 545, "connect": 42, "bind": 49, "accept": 43, "accept4": 288}

#: socketcall(2)'s call number (its a0, linux/net.h SYS_*) -> the socket call it makes, for those rows are built from
SOCKETCALL_CALLS = {2: "bind", 3: "connect", 5: "accept", 18: "accept4"}


@dataclass(frozen=True, slots=True)
class Arch:
    """One audit architecture: its ``arch=`` value, the name auditd's tools give it, its call numbers."""

    value: int
    name: str
    calls: Mapping[str, int]
    names: Mapping[int, str] = field(init=False, repr=False, compare=False)  # number -> call name

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", MappingProxyType({nr: name for name, nr in self.calls.items()}))

    @property
    def big_endian(self) -> bool:
        """Host byte order of the ABI (sa_family in a SOCKADDR is written in it)."""
        return not self.value & AUDIT_ARCH_LE

    @property
    def bits(self) -> int:
        return 64 if self.value & AUDIT_ARCH_64BIT else 32


ARCHES: Mapping[int, Arch] = MappingProxyType(
    {
        a.value: a
        for a in (
            Arch(AUDIT_ARCH_X86_64, "x86_64", MappingProxyType(_X86_64)),
            Arch(AUDIT_ARCH_I386, "i386", MappingProxyType(_I386)),
            Arch(AUDIT_ARCH_AARCH64, "aarch64", MappingProxyType(_ASM_GENERIC)),
            Arch(AUDIT_ARCH_ARM, "arm", MappingProxyType(_ARM)),
            Arch(AUDIT_ARCH_ARMEB, "armeb", MappingProxyType(_ARM)),
            Arch(AUDIT_ARCH_PPC, "ppc", MappingProxyType(_POWERPC)),
            Arch(AUDIT_ARCH_PPC64, "ppc64", MappingProxyType(_POWERPC)),
            Arch(AUDIT_ARCH_PPC64LE, "ppc64le", MappingProxyType(_POWERPC)),
            Arch(AUDIT_ARCH_S390, "s390", MappingProxyType(_S390)),
            Arch(AUDIT_ARCH_S390X, "s390x", MappingProxyType(_S390)),
            Arch(AUDIT_ARCH_RISCV32, "riscv32", MappingProxyType(_ASM_GENERIC)),
            Arch(AUDIT_ARCH_RISCV64, "riscv64", MappingProxyType(_ASM_GENERIC)),
        )
    }
)

#: arch value -> {call name: number} (the native numbers, as audit rules take them)
SYSCALL_TABLES: Mapping[int, Mapping[str, int]] = MappingProxyType({v: a.calls for v, a in ARCHES.items()})

_X32_NAMES = {nr: name for name, nr in _X32.items()}


def syscall_name(arch: int, nr: int) -> str | None:
    """The name of syscall ``nr`` of ABI ``arch`` among the calls rows are built from, else None."""
    if arch == AUDIT_ARCH_X86_64 and nr & X32_SYSCALL_BIT:
        return _X32_NAMES.get(nr & ~X32_SYSCALL_BIT)
    known = ARCHES.get(arch)
    return known.names.get(nr) if known is not None else None


def arch_name(arch: int) -> str:
    """``x86_64``, ``ppc64``, ... or ``0x0000beef`` for an architecture we do not know."""
    known = ARCHES.get(arch)
    return known.name if known is not None else f"0x{arch:08x}"
