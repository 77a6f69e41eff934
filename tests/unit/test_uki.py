import pefile
import pytest

from cloudboot import pe
from cloudboot.arch import get_arch
from cloudboot.pe import uki
from tests.helpers import debian_kernel, debian_stub

X86 = get_arch("x86_64")


@pytest.fixture(scope="module")
def parts():
    return uki.UKIParts(
        stub=debian_stub().read_bytes(), linux=debian_kernel().read_bytes(),
        initrd=b"\x1f\x8b" + b"i" * 3000, cmdline="console=ttyS0 cloudboot.disk=LABEL=x",
        osrel=uki.osrel_text(version="9"), uname="6.1.0-test",
    )


def test_sections_layout_and_contents(parts):
    image = uki.assemble(parts, X86)
    assert pe.check_uki(image, X86.pe_machine) == []
    parsed = pe.parse(image)
    names = [s.name for s in parsed.sections]
    assert names[-5:] == [".osrel", ".cmdline", ".uname", ".initrd", ".linux"]
    assert parsed.section_data(".cmdline") == parts.cmdline.encode()
    assert parsed.section_data(".linux") == parts.linux
    assert parsed.section_data(".initrd") == parts.initrd
    assert parsed.symtab_pointer == 0 and parsed.n_symbols == 0


def test_pefile_agrees(parts):
    image = uki.assemble(parts, X86)
    p = pefile.PE(data=image, fast_load=True)
    assert p.OPTIONAL_HEADER.CheckSum == p.generate_checksum()
    last = p.sections[-1]
    assert last.Name.rstrip(b"\0") == b".linux"
    align = p.OPTIONAL_HEADER.SectionAlignment
    assert p.OPTIONAL_HEADER.SizeOfImage == pe.align(
        last.VirtualAddress + last.Misc_VirtualSize, align)
    for s in p.sections[-5:]:
        assert s.VirtualAddress % align == 0
        assert s.PointerToRawData % p.OPTIONAL_HEADER.FileAlignment == 0


def test_not_a_kernel_is_refused(parts):
    bad = uki.UKIParts(parts.stub, b"\x7fELF" + b"\0" * 100, parts.initrd, "", "")
    with pytest.raises(uki.UKIError, match="not a PE/COFF file"):
        uki.assemble(bad, X86)


def test_kernel_for_another_arch_is_refused(parts):
    with pytest.raises(uki.UKIError, match="for x86_64, not for aarch64"):
        uki.check_kernel(parts.linux, get_arch("arm64"))


def test_command_line_too_long(parts):
    long = uki.UKIParts(parts.stub, parts.linux, parts.initrd, "x" * 5000, "")
    with pytest.raises(uki.UKIError, match="command line is 5000 bytes"):
        uki.assemble(long, X86)


def test_checker_reports_a_misplaced_linux(parts):
    image = bytearray(uki.assemble(parts, X86))
    parsed = pe.parse(bytes(image))
    # Swap the names of the last two sections: .linux is no longer last.
    a, b = parsed.sections[-2], parsed.sections[-1]
    image[a.header_offset : a.header_offset + 8] = b".linux\0\0"
    image[b.header_offset : b.header_offset + 8] = b".initrd\0"
    assert ".linux is not the last section" in pe.check_uki(bytes(image))
