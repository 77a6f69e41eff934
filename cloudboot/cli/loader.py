"""`cloudboot build --path b|d` and `cloudboot vars set`: the native-loader side of the CLI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cloudboot.arch import host_arch
from cloudboot.cli.errors import CliError


def _refuse_path_ac_options(args: argparse.Namespace, path: str, what: str) -> None:
    """The bootstrap's options mean nothing to a native loader: say so instead of ignoring."""
    ignored = [f"--{n.replace('_', '-')}" for n in ("kernel", "initramfs", "stub", "plan",
                                                    "plan_file", "target", "exit", "uki")
               if getattr(args, n, None)]
    if ignored:
        raise CliError(f"--path {path} builds the {what}; {', '.join(ignored)} "
                       "belong to Path A/C")


def cmd_build_b(args: argparse.Namespace) -> int:
    from cloudboot.loader.compile import LoaderBuildError
    from cloudboot.loader.media import MediaError, build_b_media

    arch = args.arch or host_arch()
    _refuse_path_ac_options(args, "b", "native loader (set its target with `cloudboot vars set`)")
    try:
        media = build_b_media(arch, Path(args.iso), cmdline=args.cmdline)
    except (LoaderBuildError, MediaError, OSError) as e:
        raise CliError(str(e)) from None
    what = "hybrid ISO" if media.kind == "iso" else "GPT disk with one ESP"
    print(f"{media.path}: {media.size / 1e6:.1f} MB {what} ({arch.name}), Path B loader "
          f"\\EFI\\BOOT\\{arch.efi_boot_file} ({media.loader.stat().st_size} bytes)")
    if media.cmdline is not None:
        print(f"  \\cmdline: {media.cmdline}")
    return 0


def cmd_build_d(args: argparse.Namespace) -> int:
    """`cloudboot build --path d --registry H:P --repo R (--tag T|--digest D) [--cmdline C]
    [--insecure] [--arch A] -o boot.iso`: prints what it wrote."""
    from cloudboot.loader.compile import LoaderBuildError
    from cloudboot.loader.netconfig import NetConfig, NetConfigError, build_d_loader, write_media

    arch = args.arch or host_arch()
    _refuse_path_ac_options(args, "d", "network loader")
    if not getattr(args, "registry", None) or not getattr(args, "repo", None):
        raise CliError("--path d needs --registry HOST:PORT and --repo REPOSITORY "
                             "(and --tag T or --digest sha256:…)")
    try:
        cfg = NetConfig.make(args.registry, args.repo, tag=getattr(args, "tag", None),
                             digest=getattr(args, "digest", None), cmdline=args.cmdline,
                             insecure=bool(getattr(args, "insecure", False)))
        efi = build_d_loader(arch, cfg)
        out = Path(getattr(args, "iso", None) or "boot.iso")
        size = write_media(arch, efi, out)
    except (NetConfigError, LoaderBuildError, OSError) as e:
        raise CliError(str(e)) from None
    scheme = "http" if cfg.insecure else "https"
    sep = "@" if cfg.reference.startswith("sha256:") else ":"
    print(f"{out}: {size / 1e6:.1f} MB boot image ({arch.name}), Path D loader "
          f"{len(efi) / 1e3:.0f} KB as \\EFI\\BOOT\\{arch.efi_boot_file}")
    print(f"  pulls {scheme}://{cfg.registry}/{cfg.repository}{sep}{cfg.reference}")
    print(f"  cmdline: {cfg.cmdline or '(the artifact cmdline layer)'}")
    return 0


def cmd_vars_set(args: argparse.Namespace) -> int:
    try:
        return _vars_set(args)
    except CliError as e:
        print(f"cloudboot vars set: error: {e}", file=sys.stderr)
        return 1


def _vars_set(args: argparse.Namespace) -> int:
    from cloudboot.efi import guid, varstore

    path = Path(args.vars)
    changes = [("CloudBootTarget", args.target), ("CloudBootCmdline", args.cmdline)]
    for name, value in changes:
        if value is None:
            continue
        if not value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise CliError(f"{name} {value!r}: empty or holds control characters")
        if len(value.encode("utf-8")) > 1000:
            raise CliError(f"{name}: {len(value.encode())} bytes; the loader reads at "
                                 "most 1000")
    if not path.is_file():
        raise CliError(f"{path}: no such vars file")
    try:
        for name, value in changes:
            if value is not None:
                varstore.set_cloudboot_var(path, name, value.encode("utf-8"))
                print(f"{path}: {name} = {value!r}")
        if args.clear_mark and varstore.VarStore(path).get(
                "CloudBootMark", guid.CLOUDBOOT_VENDOR) is not None:
            store = varstore.VarStore(path)
            store.delete("CloudBootMark", guid.CLOUDBOOT_VENDOR)
            store.save()
            print(f"{path}: CloudBootMark cleared")
    except varstore.VarStoreError as e:
        raise CliError(str(e)) from None
    except (OSError, ValueError) as e:
        raise CliError(f"{path}: {e}") from None
    return 0


def add_vars_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    v = sub.add_parser("vars", help="set cloudboot's EFI variables in an OVMF/AAVMF vars file")
    vsub = v.add_subparsers(dest="vars_command", required=True)
    s = vsub.add_parser("set", help="set CloudBootTarget (and CloudBootCmdline) for Path B")
    s.add_argument("--vars", required=True, help="OVMF/AAVMF variable store file")
    s.add_argument("--target", required=True,
                   help="NAME (\\EFI\\Linux\\NAME.efi on a FAT volume), ext4:[UUID=…|LABEL=…] "
                        "or auto")
    s.add_argument("--cmdline", help="kernel command line (CloudBootCmdline)")
    s.add_argument("--clear-mark", action="store_true",
                   help="also remove CloudBootMark left by an earlier run")
    s.set_defaults(func=cmd_vars_set)
