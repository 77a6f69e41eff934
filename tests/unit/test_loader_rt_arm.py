"""The armv7 loader's division runtime (loader/lib/rt_arm.c: __rt_udiv, __rt_udiv64), run for
real: clang compiles rt_arm.c and a probe of `/` and `%` for the loader's own armv7 target and
flags (thumbv7-windows, where clang lowers them to calls into these helpers with the divisor
first and the remainder in r1 / r2:r3), the COFF assembly is re-assembled as ELF, linked with
a freestanding driver, and executed under qemu-arm; every quotient and remainder is checked
against Python's divmod."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cloudboot.loader.compile import _TARGETS, CFLAGS, CFLAGS_ARCH, SOURCE_ROOT

ELF_TARGET = "thumbv7-unknown-linux-gnueabihf"
MASK64 = (1 << 64) - 1

PROBE = """\
typedef unsigned long long u64;
unsigned q32(unsigned a, unsigned b) { return a / b; }
unsigned r32(unsigned a, unsigned b) { return a % b; }
u64 q64(u64 a, u64 b) { return a / b; }
u64 r64(u64 a, u64 b) { return a % b; }
"""

DRIVER = """\
typedef unsigned long long u64;
unsigned q32(unsigned a, unsigned b);
unsigned r32(unsigned a, unsigned b);
u64 q64(u64 a, u64 b);
u64 r64(u64 a, u64 b);
#include "vectors.h"

__attribute__((naked)) static int sys_write(int fd, const char *buf, unsigned n) {
    __asm__ volatile("push {r7, lr}\\n\\tmovs r7, #4\\n\\tsvc #0\\n\\tpop {r7, pc}\\n\\t");
}
__attribute__((naked, noreturn)) static void sys_exit(int code) {
    __asm__ volatile("movs r7, #1\\n\\tsvc #0\\n\\t");
}

static char out[64 * 1024];
static unsigned used;

static void flush(void) {
    sys_write(1, out, used);
    used = 0;
}

static void hex(u64 v) {
    static const char digits[] = "0123456789abcdef";
    for (int shift = 60; shift >= 0; shift -= 4)
        out[used++] = digits[(v >> shift) & 15];
}

static void line(u64 q, u64 r) {
    if (used > sizeof(out) - 40)
        flush();
    hex(q);
    out[used++] = ' ';
    hex(r);
    out[used++] = '\\n';
}

void cmain(void) {
    for (unsigned i = 0; i < sizeof(V32) / sizeof(V32[0]); i++)
        line(q32(V32[i][0], V32[i][1]), r32(V32[i][0], V32[i][1]));
    for (unsigned i = 0; i < sizeof(V64) / sizeof(V64[0]); i++)
        line(q64(V64[i][0], V64[i][1]), r64(V64[i][0], V64[i][1]));
    flush();
    sys_exit(0);
}

__attribute__((naked, noreturn)) void _start(void) {
    __asm__ volatile("bl cmain\\n\\t");
}
"""


def _tool(*names: str) -> str:
    for n in names:
        path = shutil.which(n)
        if path:
            return path
    pytest.fail(f"{names[0]} missing (python -m cloudboot.debian.hostdeps ensure tests)")


def _vectors(bits: int, edges: list[int], randoms: int) -> list[tuple[int, int]]:
    """Every pair of `edges` (non-zero divisors), then `randoms` pairs of random widths."""
    out = [(a, b) for a in edges for b in edges if b]
    rnd = random.Random(bits)
    for _ in range(randoms):
        out.append((rnd.getrandbits(rnd.randint(1, bits)),
                    rnd.getrandbits(rnd.randint(1, bits)) or 1))
    return out


def _vectors32() -> list[tuple[int, int]]:
    return _vectors(32, [0, 1, 2, 3, 7, 10, 255, 256, 4095, 4096, 65535, 65536, 0x7FFFFFFF,
                         0x80000000, 0xFFFFFFFE, 0xFFFFFFFF], 600)


def _vectors64() -> list[tuple[int, int]]:
    return _vectors(64, [0, 1, 2, 3, 10, 4096, 0xFFFFFFFF, 1 << 32, (1 << 32) + 1,
                         0x1_0000_0001_0000, (1 << 63) - 1, 1 << 63, MASK64 - 1, MASK64,
                         1_000_000_000_000, 773849088], 900)


def _coff_asm_to_elf(text: str) -> str:
    """clang's thumbv7-windows assembly, re-targeted to ELF: the same instructions."""
    lines = []
    for line in text.splitlines():
        if re.match(r"\s*\.(def|scl|type|endef)\b", line):
            continue
        line = line.replace("$MBB", ".LMBB")
        line = re.sub(r"^\s*\.code16\b", "\t.thumb", line)
        line = re.sub(r"^\s*__brkdiv0\b", "\tudf\t#249", line)  # clang's divide-by-0 trap
        lines.append(line)
    return "\n".join(lines) + "\n"


def _windows_asm(cc: str, src: Path, out: Path) -> str:
    r = subprocess.run([cc, f"--target={_TARGETS['armv7']}", *CFLAGS, *CFLAGS_ARCH["armv7"],
                        "-I", str(SOURCE_ROOT / "include"), "-S", str(src), "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    out.write_text(_coff_asm_to_elf(text))
    return text


def test_division_helpers_under_qemu_arm(tmp_path: Path) -> None:
    cc = _tool("clang", "clang-14")
    _tool("ld.lld", "ld.lld-14")
    qemu = _tool("qemu-arm-static", "qemu-arm")
    probe = tmp_path / "probe.c"
    probe.write_text(PROBE)
    probe_asm = _windows_asm(cc, probe, tmp_path / "probe.s")
    # The probe really calls the helpers (not a hardware divide) the way rt_arm.c expects:
    # dividend and divisor swapped into r0/r1 (r0:r1 / r2:r3), remainder taken from r1 / r2:r3.
    assert probe_asm.count("bl\t__rt_udiv\n") == 2 and probe_asm.count("bl\t__rt_udiv64\n") == 2
    assert "udiv\t" not in probe_asm and "sdiv\t" not in probe_asm
    assert re.search(r"bl\t__rt_udiv\n\tmov\tr0, r1\n", probe_asm)
    assert re.search(r"bl\t__rt_udiv64\n\tmov\tr0, r2\n\tmov\tr1, r3\n", probe_asm)
    rt_asm = _windows_asm(cc, SOURCE_ROOT / "lib" / "rt_arm.c", tmp_path / "rt.s")
    assert "__rt_udiv" in rt_asm and not re.search(r"\bv(ld|st|mov|add|mul)", rt_asm)

    v32, v64 = _vectors32(), _vectors64()
    (tmp_path / "vectors.h").write_text(
        "static const unsigned V32[][2] = {"
        + ",".join(f"{{{a}u,{b}u}}" for a, b in v32) + "};\n"
        + "static const u64 V64[][2] = {"
        + ",".join(f"{{{a}ull,{b}ull}}" for a, b in v64) + "};\n")
    (tmp_path / "driver.c").write_text(DRIVER)
    exe = tmp_path / "rt-test"
    r = subprocess.run([cc, f"--target={ELF_TARGET}", "-mthumb", "-O1", "-ffreestanding",
                        "-nostdlib", "-static", "-fuse-ld=lld", "-fno-stack-protector",
                        "-mfpu=none", "-I", str(tmp_path), "-o", str(exe),
                        str(tmp_path / "driver.c"), str(tmp_path / "probe.s"),
                        str(tmp_path / "rt.s")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    run = subprocess.run([qemu, "-cpu", "cortex-a9", str(exe)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    got = run.stdout.splitlines()
    want = [f"{a // b:016x} {a % b:016x}" for a, b in v32 + v64]
    assert len(got) == len(want)
    bad = [(ab, g, w) for ab, g, w in zip(v32 + v64, got, want, strict=True) if g != w]
    assert not bad, f"{len(bad)} wrong, first: {bad[:3]}"


def test_rt_arm_is_armv7_only() -> None:
    from cloudboot.loader.compile import sources

    rt = SOURCE_ROOT / "lib" / "rt_arm.c"
    assert rt in sources("b", "armv7") and rt in sources("d", "armv7")
    for arch in ("x86_64", "aarch64", None):
        assert rt not in sources("b", arch)
