"""Recipe hashing: what changes an image's key, what shares a root tree."""

from __future__ import annotations

import dataclasses

import pytest

from lab.images import debian
from lab.images.recipe import FileSpec, canonical_hash


def test_key_is_stable_and_hex() -> None:
    a = debian.recipe("bookworm", "ext4")
    b = debian.recipe("bookworm", "ext4", "amd64")  # Debian arch name is an alias
    assert a == b
    assert a.key() == b.key()
    assert len(a.key()) == 64 and int(a.key(), 16) >= 0


def test_every_recipe_field_changes_the_key() -> None:
    base = debian.recipe("bookworm", "ext4")
    variants = [
        debian.recipe("bookworm", "xfs"),
        debian.recipe("trixie", "ext4"),
        dataclasses.replace(base, label="other"),
        dataclasses.replace(base, packages=base.packages + ("less",)),
        dataclasses.replace(base, builder=base.builder + 1),
        dataclasses.replace(base, files=base.files[:-1]),
    ]
    keys = {base.key()} | {v.key() for v in variants}
    assert len(keys) == len(variants) + 1


def test_script_text_changes_the_image_key_but_not_the_root_tree() -> None:
    base = debian.recipe("bookworm", "ext4")
    files = tuple(
        dataclasses.replace(f, text=f.text + "# changed\n") if f.path.endswith("userspace")
        else f for f in base.files
    )
    changed = dataclasses.replace(base, files=files)
    assert changed.key() != base.key()
    assert changed.rootfs().key() == base.rootfs().key()


def test_filesystems_of_one_release_share_one_root_tree() -> None:
    trees = {debian.recipe("bookworm", fs).rootfs().key() for fs in ("ext4", "xfs", "btrfs")}
    assert len(trees) == 1
    assert debian.recipe("trixie", "ext4").rootfs().key() not in trees


def test_derived_uuids_are_stable_distinct_and_well_formed() -> None:
    r = debian.recipe("bookworm", "btrfs")
    again = debian.recipe("bookworm", "btrfs")
    ids = [r.derived_uuid(p) for p in ("fs", "part", "disk")]
    assert ids == [again.derived_uuid(p) for p in ("fs", "part", "disk")]
    assert len(set(ids)) == 3
    assert all(len(i) == 36 and i.count("-") == 4 for i in ids)


def test_canonical_hash_ignores_key_order() -> None:
    assert canonical_hash({"a": 1, "b": [1, 2]}) == canonical_hash({"b": [1, 2], "a": 1})
    assert canonical_hash({"a": 1}) != canonical_hash({"a": 2})


def test_image_files_mask_gettys_and_enable_the_reporter() -> None:
    files = {f.path: f for f in debian.image_files("xfs")}
    assert "LABEL=cbroot\t/\txfs\t" in files["etc/fstab"].text
    wants = files["etc/systemd/system/sysinit.target.wants/cloudboot-userspace.service"]
    assert wants.symlink == "/etc/systemd/system/cloudboot-userspace.service"
    assert files["etc/systemd/system/serial-getty@.service"].symlink == "/dev/null"
    assert isinstance(files["usr/local/sbin/cloudboot-userspace"], FileSpec)


@pytest.mark.parametrize(("release", "fs"), [("buster", "ext4"), ("bookworm", "vfat")])
def test_unknown_release_or_filesystem_is_refused(release: str, fs: str) -> None:
    with pytest.raises(debian.ImageError, match=release if release == "buster" else fs):
        debian.recipe(release, fs)
