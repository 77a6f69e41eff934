"""discover.find_kernels()/pick() on directory trees shaped like real distro images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloudboot.init.storage.discover import (
    NoKernelFound,
    default_cmdline,
    find_kernels,
    pick,
    resolve_in,
)

MACHINE_ID = "6a9857a393724b7a981ebb5b8495b9ea"


def put(root: Path, rel: str, data: str | bytes = b"x") -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        p.write_text(data)
    else:
        p.write_bytes(data)
    return p


def link(root: Path, rel: str, target: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, p)


def debian(root: Path, versions: list[str]) -> Path:
    for v in versions:
        put(root, f"boot/vmlinuz-{v}", f"kernel {v}")
        put(root, f"boot/initrd.img-{v}", f"initrd {v}")
        put(root, f"boot/config-{v}", "")
        put(root, f"boot/System.map-{v}", "")
    newest, older = versions[0], versions[-1]
    link(root, "vmlinuz", f"boot/vmlinuz-{newest}")
    link(root, "initrd.img", f"boot/initrd.img-{newest}")
    link(root, "vmlinuz.old", f"boot/vmlinuz-{older}")
    link(root, "initrd.img.old", f"boot/initrd.img-{older}")
    return root


def test_debian12_newest_by_version_not_string(tmp_path: Path) -> None:
    # "6.1.0-9" sorts after "6.1.0-10" as a string; version order must win
    root = debian(tmp_path, ["6.1.0-10-cloud-amd64", "6.1.0-9-cloud-amd64"])
    found = find_kernels(root)
    assert [c.version for c in found] == ["6.1.0-10-cloud-amd64", "6.1.0-9-cloud-amd64"]
    best = pick(root)
    assert best.kernel == root / "boot/vmlinuz-6.1.0-10-cloud-amd64"
    assert best.initrd == root / "boot/initrd.img-6.1.0-10-cloud-amd64"
    assert best.options is None
    assert all(not c.kernel.name.endswith(".old") for c in found)


def test_debian13_symlink_only_in_root(tmp_path: Path) -> None:
    """Kernel only reachable through /vmlinuz (e.g. /boot is elsewhere but linked)."""
    put(tmp_path, "usr/lib/linux/vmlinuz-6.12.38+deb13-cloud-amd64", "k")
    put(tmp_path, "usr/lib/linux/initrd.img-6.12.38+deb13-cloud-amd64", "i")
    link(tmp_path, "vmlinuz", "/usr/lib/linux/vmlinuz-6.12.38+deb13-cloud-amd64")
    link(tmp_path, "initrd.img", "usr/lib/linux/initrd.img-6.12.38+deb13-cloud-amd64")
    best = pick(tmp_path)
    assert best.source == "symlink"
    assert best.version == "6.12.38+deb13-cloud-amd64"
    assert best.initrd == tmp_path / "usr/lib/linux/initrd.img-6.12.38+deb13-cloud-amd64"


def test_ubuntu2404(tmp_path: Path) -> None:
    for v in ("6.8.0-45-generic", "6.8.0-100-generic"):
        put(tmp_path, f"boot/vmlinuz-{v}", "k")
        put(tmp_path, f"boot/initrd.img-{v}", "i")
    link(tmp_path, "boot/vmlinuz", "vmlinuz-6.8.0-100-generic")
    link(tmp_path, "boot/initrd.img", "initrd.img-6.8.0-100-generic")
    put(tmp_path, "etc/kernel/cmdline", "root=LABEL=cloudimg-rootfs ro console=ttyS0\n")
    best = pick(tmp_path)
    assert best.version == "6.8.0-100-generic"
    assert best.initrd == tmp_path / "boot/initrd.img-6.8.0-100-generic"
    assert default_cmdline(tmp_path) == "root=LABEL=cloudimg-rootfs ro console=ttyS0"


def fedora_boot(boot: Path, versions: list[str]) -> Path:
    """A separate /boot filesystem: kernels at its top, BLS entries in loader/entries."""
    for v in versions:
        put(boot, f"vmlinuz-{v}", "k")
        put(boot, f".vmlinuz-{v}.hmac", "h")
        put(boot, f"initramfs-{v}.img", "i")
        put(
            boot,
            f"loader/entries/{MACHINE_ID}-{v}.conf",
            f"title Fedora Linux ({v}) 41 (Cloud Edition)\n"
            f"version {v}\nlinux /vmlinuz-{v}\ninitrd /initramfs-{v}.img\n"
            "options root=UUID=1234 ro rootflags=subvol=root no_timer_check console=ttyS0\n"
            "grub_users $grub_users\ngrub_arg --unrestricted\ngrub_class fedora\n",
        )
    put(boot, f"vmlinuz-0-rescue-{MACHINE_ID}", "rescue")
    put(boot, f"initramfs-0-rescue-{MACHINE_ID}.img", "ri")
    put(
        boot,
        f"loader/entries/{MACHINE_ID}-0-rescue.conf",
        f"title Fedora Linux (0-rescue-{MACHINE_ID})\nversion 0-rescue-{MACHINE_ID}\n"
        f"linux /vmlinuz-0-rescue-{MACHINE_ID}\ninitrd /initramfs-0-rescue-{MACHINE_ID}.img\n"
        "options root=UUID=1234 ro\n",
    )
    link(boot, "symvers-6.11.4-301.fc41.x86_64.xz", "/lib/modules/6.11.4-301.fc41.x86_64/x")
    return boot


def test_fedora41_separate_boot_bls(tmp_path: Path) -> None:
    boot = fedora_boot(tmp_path, ["6.11.4-301.fc41.x86_64", "6.11.10-300.fc41.x86_64"])
    found = find_kernels(boot)
    assert found[0].version == "6.11.10-300.fc41.x86_64"
    assert found[0].source == "bls"
    assert (
        found[0].options == "root=UUID=1234 ro rootflags=subvol=root no_timer_check console=ttyS0"
    )
    assert found[0].initrd == boot / "initramfs-6.11.10-300.fc41.x86_64.img"
    assert found[0].title is not None and "Fedora" in found[0].title
    assert found[-1].is_rescue, "the rescue kernel comes last"
    assert len(found) == 3, "BLS and /vmlinuz-V name the same files only once"


def test_only_rescue_kernel_is_used(tmp_path: Path) -> None:
    boot = fedora_boot(tmp_path, [])
    best = pick(boot)
    assert best.is_rescue and best.kernel.name == f"vmlinuz-0-rescue-{MACHINE_ID}"


def test_almalinux9_bls_in_root_with_kernelopts(tmp_path: Path) -> None:
    """/boot on the root fs (grub writes /boot/… paths) and RHEL-8 style $kernelopts."""
    v = "5.14.0-427.13.1.el9_4.x86_64"
    put(tmp_path, f"boot/vmlinuz-{v}", "k")
    put(tmp_path, f"boot/initramfs-{v}.img", "i")
    put(tmp_path, f"boot/initramfs-{v}kdump.img", "kdump")
    put(
        tmp_path,
        f"boot/loader/entries/{MACHINE_ID}-{v}.conf",
        f"title AlmaLinux ({v}) 9.4\nversion {v}\nlinux /boot/vmlinuz-{v}\n"
        f"initrd /boot/initramfs-{v}.img $tuned_initrd\noptions $kernelopts $tuned_params\n",
    )
    put(
        tmp_path,
        "boot/grub2/grubenv",
        "# GRUB Environment Block\nkernelopts=root=UUID=abcd ro crashkernel=auto\n" + "#" * 900,
    )
    best = pick(tmp_path)
    assert (best.source, best.version) == ("bls", v)
    assert best.kernel == tmp_path / f"boot/vmlinuz-{v}"
    assert best.initrd == tmp_path / f"boot/initramfs-{v}.img"
    assert best.options == "root=UUID=abcd ro crashkernel=auto"


def opensuse_root(root: Path, versions: list[str]) -> Path:
    for v in versions:
        put(root, f"usr/lib/modules/{v}/Image", f"kernel {v}")
        link(root, f"boot/Image-{v}", f"/usr/lib/modules/{v}/Image")
        put(root, f"boot/initrd-{v}", "i")
    link(root, "boot/Image", f"Image-{versions[0]}")
    link(root, "boot/initrd", f"initrd-{versions[0]}")
    return root


def test_opensuse_image_symlinks_resolve_inside_tree(tmp_path: Path) -> None:
    root = opensuse_root(tmp_path, ["6.4.0-150600.23.25-default", "6.4.0-150600.23.7-default"])
    best = pick(root)
    assert best.version == "6.4.0-150600.23.25-default"
    assert best.kernel == root / "usr/lib/modules/6.4.0-150600.23.25-default/Image"
    assert best.kernel.read_text() == "kernel 6.4.0-150600.23.25-default"
    assert best.initrd == root / "boot/initrd-6.4.0-150600.23.25-default"


def test_opensuse_btrfs_top_level_subvolume_tree(tmp_path: Path) -> None:
    """Mounted with subvolid=5: the root lives in @/.snapshots/N/snapshot."""
    (tmp_path / "@/home").mkdir(parents=True)
    (tmp_path / "@/boot/grub2/x86_64-efi").mkdir(parents=True)
    snap = tmp_path / "@/.snapshots/1/snapshot"
    opensuse_root(snap, ["6.4.0-150600.23.25-default"])
    best = pick(tmp_path)
    assert best.kernel == snap / "usr/lib/modules/6.4.0-150600.23.25-default/Image"
    assert best.initrd == snap / "boot/initrd-6.4.0-150600.23.25-default"


def test_alpine_flavour_names(tmp_path: Path) -> None:
    put(tmp_path, "boot/vmlinuz-virt", "k")
    put(tmp_path, "boot/initramfs-virt", "i")
    put(tmp_path, "boot/config-virt", "")
    (tmp_path / "lib/modules/6.6.58-0-virt").mkdir(parents=True)
    best = pick(tmp_path)
    assert best.kernel == tmp_path / "boot/vmlinuz-virt"
    assert best.initrd == tmp_path / "boot/initramfs-virt"
    assert best.version == "6.6.58-0-virt"


def test_modules_dir_fallback(tmp_path: Path) -> None:
    v = "6.11.4-301.fc41.x86_64"
    put(tmp_path, f"usr/lib/modules/{v}/vmlinuz", "k")
    put(tmp_path, f"boot/initramfs-{v}.img", "i")
    best = pick(tmp_path)
    assert (best.source, best.version) == ("modules-dir", v)
    assert best.initrd == tmp_path / f"boot/initramfs-{v}.img"


def test_symlink_cannot_escape_the_tree(tmp_path: Path) -> None:
    """An absolute link names the tree's file; the host's same path must not be used."""
    root = tmp_path / "root"
    outside = tmp_path / "outside-vmlinuz-6.1.0-1"
    outside.write_text("host kernel")
    link(root, "boot/vmlinuz-6.1.0-1", str(outside))
    link(root, "vmlinuz", "../../../../" + str(outside))
    with pytest.raises(NoKernelFound):
        pick(root)
    assert resolve_in(root, "vmlinuz") is None, "the host file is not the tree's file"
    inside = put(root, str(outside.relative_to("/")), "tree kernel")
    assert resolve_in(root, "vmlinuz") == inside
    assert pick(root).kernel == inside
    link(root, "loop", "loop")
    assert resolve_in(root, "loop/x") is None


def test_no_kernel_lists_where_it_looked(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    (tmp_path / "etc").mkdir()
    with pytest.raises(NoKernelFound) as err:
        pick(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "boot/loader/entries") in msg
    assert str(tmp_path / "boot/vmlinuz") in msg
    assert str(tmp_path / "usr/lib/modules") in msg
    assert err.value.looked and len(err.value.looked) == len(set(err.value.looked))
    assert default_cmdline(tmp_path) is None


def test_default_cmdline_multiline(tmp_path: Path) -> None:
    put(tmp_path, "etc/kernel/cmdline", "# comment\nroot=/dev/vda1  ro\nquiet\n")
    assert default_cmdline(tmp_path) == "root=/dev/vda1 ro quiet"
