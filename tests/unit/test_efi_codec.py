"""GUIDs, device paths and load options: round trips, text, agreement with virt-firmware."""

from __future__ import annotations

import ipaddress
import struct
import uuid

import pytest
import virt.firmware.efi.bootentry as vf_bootentry  # type: ignore[import-untyped]
import virt.firmware.efi.devpath as vf_devpath  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudboot.efi import devpath as dp
from cloudboot.efi import guid, loadopt

# No example database in the checkout; keep the whole file well under a minute.
_prop = settings(database=None, max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])

PART = "0fc63daf-8483-4772-8e79-3d69d8477de4"


# ---- guid -------------------------------------------------------------------------------


def test_guid_mixed_endian_layout() -> None:
    b = guid.to_bytes(guid.EFI_GLOBAL_VARIABLE)
    # First three fields little-endian, the rest as written: what the spec stores on disk.
    assert b.hex() == "61dfe48bca93d211aa0d00e098032b8c"
    assert guid.from_bytes(b) == guid.EFI_GLOBAL_VARIABLE
    assert guid.from_bytes(b"xx" + b, 2) == guid.EFI_GLOBAL_VARIABLE


@_prop
@given(st.uuids())
def test_guid_round_trip(u: uuid.UUID) -> None:
    assert guid.from_bytes(guid.to_bytes(str(u).upper())) == str(u)


def test_guid_errors_say_what() -> None:
    with pytest.raises(guid.GuidError, match="not a GUID: 'nope'"):
        guid.to_bytes("nope")
    with pytest.raises(guid.GuidError, match="offset 4 needs 16 bytes, have 2"):
        guid.from_bytes(b"123456", 4)


# ---- device paths: strategies -------------------------------------------------------------

u8, u16, u32, u64 = (st.integers(0, 2**n - 1) for n in (8, 16, 32, 64))
guids = st.uuids().map(str)
ipv4 = st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i)))
ucs2_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"),
                    max_size=40)

typed_nodes = st.one_of(
    st.builds(dp.Pci, u8, u8),
    st.builds(dp.VenHw, guids, st.binary(max_size=16)),
    st.builds(dp.VenMsg, guids, st.binary(max_size=16)),
    st.builds(dp.VenMedia, guids, st.binary(max_size=16)),
    st.builds(dp.Acpi, u32, u32),
    st.builds(dp.Scsi, u16, u16),
    st.builds(dp.Usb, u8, u8),
    st.builds(dp.MacAddr, st.binary(min_size=32, max_size=32), u8),
    st.builds(dp.IPv4, ipv4, ipv4, u16, u16, u16, st.booleans(), ipv4, ipv4),
    st.builds(dp.IPv6, ipv6, ipv6, u16, u16, u16, u8, u8, ipv6),
    st.builds(dp.Sata, u16, u16, u16),
    st.builds(dp.NVMe, u32, st.binary(min_size=8, max_size=8)),
    st.builds(dp.Uri, st.text(max_size=40)),
    st.builds(dp.HardDrive, u32, u64, u64, guids, st.sampled_from([dp.GPT])),
    st.builds(lambda n, s, z, sig: dp.HardDrive(n, s, z, f"0x{sig:08x}", dp.MBR, dp.SIG_MBR),
              u32, u64, u64, u32),
    st.builds(dp.CdRom, u32, u64, u64),
    st.builds(dp.FilePath, ucs2_text),
    st.builds(dp.FvFile, guids),
    st.builds(dp.Fv, guids),
    st.just(dp.EndInstance()),
)
single_instance = typed_nodes.filter(lambda n: not isinstance(n, dp.EndInstance))
raw_nodes = st.builds(dp.RawNode, u8, u8, st.binary(max_size=24))


# ---- device paths -------------------------------------------------------------------------


@_prop
@given(st.lists(typed_nodes, max_size=8))
def test_typed_nodes_round_trip(nodes: list[dp.Node]) -> None:
    path = dp.terminated(nodes)
    assert dp.parse(dp.pack(path)) == path


@_prop
@given(st.lists(st.one_of(typed_nodes, raw_nodes), max_size=10))
def test_any_well_formed_bytes_round_trip(nodes: list[dp.Node]) -> None:
    # Raw nodes may carry any (type, subtype, data), including malformed known kinds.
    b = dp.pack(nodes)
    parsed = dp.parse(b)
    assert dp.pack(parsed) == b
    assert len(parsed) == len(nodes)
    dp.to_text(parsed)  # renders whatever it holds without raising


@_prop
@given(st.binary(max_size=80))
def test_random_bytes_round_trip_or_clear_error(b: bytes) -> None:
    try:
        parsed = dp.parse(b)
    except dp.DevicePathError as e:
        assert "offset" in str(e)
    else:
        assert dp.pack(parsed) == b


def test_malformed_kinds_stay_raw() -> None:
    # A FilePath without its NUL and a 19-byte (pre-2.x) IPv4 node both re-pack exactly.
    odd_file = struct.pack("<BBH", 4, 4, 7) + b"abc"
    old_ipv4 = struct.pack("<BBH", 3, 12, 23) + bytes(19)
    b = odd_file + old_ipv4
    nodes = dp.parse(b)
    assert [type(n) for n in nodes] == [dp.RawNode, dp.RawNode]
    assert dp.pack(nodes) == b
    assert dp.to_text(nodes) == "Path(4,4,616263)/Path(3,12," + "00" * 19 + ")"


def test_errors_name_offset_and_node() -> None:
    good = dp.pack([dp.Pci(1, 0)])
    with pytest.raises(dp.DevicePathError, match=r"offset 6 .*type 0x04, subtype 0x04.* 40"):
        dp.parse(good + struct.pack("<BBH", 4, 4, 40) + b"x")
    with pytest.raises(dp.DevicePathError, match="offset 6: 2 byte"):
        dp.parse(good + b"\x04\x04")
    with pytest.raises(dp.DevicePathError, match="length 2, less than"):
        dp.parse(struct.pack("<BBH", 1, 1, 2))


def test_text_forms() -> None:
    nodes = [
        dp.HardDrive(1, 0x800, 0x7F800, PART),
        dp.FilePath.of("/EFI/Linux/x.efi"),
        dp.End(),
    ]
    assert dp.to_text(nodes) == f"HD(1,GPT,{PART},0x800,0x7F800)/\\EFI\\Linux\\x.efi"
    ovmf_like = [dp.pci_root(), dp.Pci(2, 0), dp.MacAddr(bytes.fromhex("525400123456"), 1),
                 dp.IPv4(), dp.Uri(""), dp.End()]
    assert dp.to_text(ovmf_like) == (
        "PciRoot(0x0)/Pci(0x2,0x0)/MAC(525400123456,0x1)/"
        "IPv4(0.0.0.0,0x0,DHCP,0.0.0.0,0.0.0.0,0.0.0.0)/Uri()"
    )
    assert dp.to_text([dp.Acpi(0x050141D0, 0), dp.EndInstance(), dp.Sata(2), dp.End()]) == (
        "Acpi(PNP0501,0x0),Sata(0x2,0xFFFF,0x0)"
    )
    assert dp.to_text([dp.NVMe(1, bytes(range(8))), dp.End(), dp.CdRom(0, 16, 32)]) == (
        "NVMe(0x1,07-06-05-04-03-02-01-00) ; CDROM(0x0,0x10,0x20)"
    )
    assert dp.to_text([dp.HardDrive(2, 63, 100, "0x12345678", dp.MBR, dp.SIG_MBR)]) == (
        "HD(2,MBR,0x12345678,0x3F,0x64)"
    )


def _vf_elems(b: bytes) -> list[tuple[int, int, bytes]]:
    return [(e.devtype, e.subtype, bytes(e.data)) for e in vf_devpath.DevicePath(b)]


@_prop
@given(st.lists(single_instance, max_size=6))
def test_agrees_with_virt_firmware_devpath(nodes: list[dp.Node]) -> None:
    b = dp.pack(dp.terminated(nodes))
    assert _vf_elems(b) == [(n.type, n.subtype, n.payload()) for n in nodes]
    assert bytes(vf_devpath.DevicePath(b)) == b


def test_virt_firmware_builders_decode_to_our_nodes() -> None:
    elem = vf_devpath.DevicePathElem()
    elem.set_gpt(1, 0x800, 0x7F800, PART)
    path = vf_devpath.DevicePath()
    path.append(elem)
    path.append(vf_devpath.DevicePath.filepath("\\EFI\\Linux\\x.efi")[0])
    nodes = dp.parse(bytes(path))
    assert nodes == [dp.HardDrive(1, 0x800, 0x7F800, PART), dp.FilePath("\\EFI\\Linux\\x.efi"),
                     dp.End()]
    uri = dp.parse(bytes(vf_devpath.DevicePath.uri("http://h/x.iso")))
    assert uri == [dp.Uri("http://h/x.iso"), dp.End()]


# ---- load options -------------------------------------------------------------------------

def _options(nodes: st.SearchStrategy[dp.Node]) -> st.SearchStrategy[loadopt.LoadOption]:
    return st.builds(loadopt.LoadOption, u32, ucs2_text,
                     st.lists(nodes, max_size=5).map(dp.terminated), st.binary(max_size=40))


options = _options(typed_nodes)


@_prop
@given(options)
def test_load_option_round_trip(opt: loadopt.LoadOption) -> None:
    b = opt.pack()
    assert loadopt.unpack(b) == opt
    assert loadopt.unpack(b).pack() == b


@_prop
@given(_options(single_instance))  # virt-firmware stops at the first End of any kind
def test_load_option_agrees_with_virt_firmware(opt: loadopt.LoadOption) -> None:
    b = opt.pack()
    vf = vf_bootentry.BootEntry(data=b)
    assert vf.attr == opt.attributes
    assert str(vf.title) == opt.description
    assert (vf.optdata or b"") == opt.optional_data
    assert bytes(vf) == b


def test_truncated_load_options_fail_clearly() -> None:
    opt = loadopt.cloudboot_option("deb", 1, 2048, 4096, PART, "\\EFI\\Linux\\deb-vmlinuz.efi",
                                   None, "")
    b = opt.pack()
    fixed = 6 + len(opt.description.encode("utf-16-le")) + 2 + len(dp.pack(opt.file_path_list))
    for cut in range(fixed):
        with pytest.raises(loadopt.LoadOptionError, match=r"^Boot0007: truncated|bad FilePath"):
            loadopt.unpack(b[:cut], "Boot0007")
    # Cutting into the optional data still leaves a well-formed option.
    assert loadopt.unpack(b[: fixed + 2]).optional_data == opt.optional_data[:2]


def test_cloudboot_option_layout() -> None:
    kernel, initrd = loadopt.staged_paths("debian 12/cloud")
    assert (kernel, initrd) == ("\\EFI\\Linux\\debian12cloud-vmlinuz.efi",
                                "\\EFI\\Linux\\debian12cloud-initrd")
    opt = loadopt.cloudboot_option("debian 12/cloud", 1, 0x800, 0x7F800, PART.upper(), kernel,
                                   initrd, " console=ttyS0 root=LABEL=r ")
    assert opt.attributes == loadopt.LOAD_OPTION_ACTIVE
    assert opt.description == "cloud-boot debian 12/cloud"
    assert loadopt.is_cloudboot(opt)
    assert opt.path_text() == f"HD(1,GPT,{PART},0x800,0x7F800)/{kernel}"
    assert opt.optional_data == (
        f"initrd={initrd} console=ttyS0 root=LABEL=r".encode("utf-16-le") + b"\0\0"
    )
    assert opt.optional_text() == f"initrd={initrd} console=ttyS0 root=LABEL=r"
    # virt-firmware reads the same partition and file back.
    vf = vf_bootentry.BootEntry(data=opt.pack())
    assert str(vf.devicepath[0].get_partuuid()) == PART
    assert str(vf.devicepath[1].get_filepath()) == kernel
    assert str(vf.title) == "cloud-boot debian 12/cloud"


def test_cloudboot_option_rejects_nonsense() -> None:
    with pytest.raises(loadopt.LoadOptionError, match="partition number 0"):
        loadopt.cloudboot_option("t", 0, 1, 1, PART, "\\k", None, "")
    with pytest.raises(guid.GuidError, match="not a GUID"):
        loadopt.cloudboot_option("t", 1, 1, 1, "zz", "\\k", None, "")
    with pytest.raises(loadopt.LoadOptionError, match="no character usable"):
        loadopt.safe_name("///")


def test_is_cloudboot_needs_the_exact_prefix() -> None:
    def o(desc: str) -> loadopt.LoadOption:
        return loadopt.LoadOption(1, desc)

    assert loadopt.is_cloudboot(o("cloud-boot x"))
    assert not loadopt.is_cloudboot(o("cloud-bootx"))
    assert not loadopt.is_cloudboot(o("Cloud-boot x"))
    assert not loadopt.is_cloudboot(o("UEFI Misc Device"))
