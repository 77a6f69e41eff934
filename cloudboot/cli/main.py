"""The `cloudboot` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cloudboot import __version__
from cloudboot.arch import UnknownArch, get_arch, host_arch
from cloudboot.cli.errors import CliError


def _arch(value: str):  # type: ignore[no-untyped-def]
    try:
        return get_arch(value)
    except UnknownArch as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_build(args: argparse.Namespace) -> int:
    from cloudboot.bootstrap.build import BuildError, BuildRequest, build
    from cloudboot.debian.debpkg import PackageError

    if getattr(args, "path", "a") in ("b", "d"):
        from cloudboot.cli import loader as cli_loader

        return (cli_loader.cmd_build_b if args.path == "b" else cli_loader.cmd_build_d)(args)

    req = BuildRequest(
        arch=args.arch or host_arch(), output=Path(args.iso), kernel=args.kernel,
        initramfs=args.initramfs, stub=args.stub, cmdline=args.cmdline, plan=args.plan,
        plan_file=args.plan_file, target=args.target, exit=args.exit, uki_path=args.uki,
    )
    try:
        result = build(req)
    except (BuildError, PackageError, OSError) as e:
        raise CliError(str(e)) from None
    print(f"{result.iso}: {result.iso_size / 1e6:.1f} MB hybrid ISO ({req.arch.name}), "
          f"UKI {result.uki_size / 1e6:.1f} MB")
    print(f"  cmdline: {result.cmdline}")
    if result.uki:
        print(f"  UKI written to {result.uki}")
    return 0


def cmd_cache_disk(args: argparse.Namespace) -> int:
    from cloudboot.media.cachedisk import CacheDiskError, create
    from cloudboot.media.fat import FatError

    try:
        result = create(Path(args.path), args.size_mib, force=args.force)
    except (CacheDiskError, FatError, OSError) as e:
        raise CliError(str(e)) from None
    print(result.message)
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    from cloudboot.efi import varstore

    try:
        changes = varstore.reset(Path(args.vars), dry_run=args.dry_run)
    except varstore.VarStoreError as e:
        raise CliError(str(e)) from None
    except (OSError, ValueError) as e:
        raise CliError(f"{args.vars}: {e}") from None
    prefix = "would " if args.dry_run else ""
    if not changes:
        print(f"{args.vars}: no cloudboot boot entries; nothing to change")
    for line in changes:
        print(prefix + line)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from cloudboot.cli.inspect import InspectError, inspect_path, render

    try:
        report = inspect_path(Path(args.path))
    except (InspectError, OSError) as e:
        raise CliError(str(e)) from None
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return 0


def cmd_plan_check(args: argparse.Namespace) -> int:
    from cloudboot.plan.tool import check_main

    return check_main(args.file, args.arch.name if args.arch else None)


def cmd_plan_show(args: argparse.Namespace) -> int:
    from cloudboot.plan import PlanError, load_plan
    from cloudboot.plan.tool import show

    arch = (args.arch or host_arch()).name
    try:
        report = show(load_plan(args.file, arch=arch), arch)
    except PlanError as e:
        raise CliError(str(e)) from None
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key}: {json.dumps(value)}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cloudboot", description=__doc__)
    p.add_argument("--version", action="version", version=f"cloudboot {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build a UKI and a hybrid boot.iso")
    b.add_argument("--arch", type=_arch, help="x86_64|aarch64|riscv64|loongarch64|armv7 "
                   "(aliases amd64, arm64, arm); default: the host's")
    b.add_argument("--kernel", type=Path, help="EFI-stub kernel (default: Debian's cloud kernel)")
    b.add_argument("--initramfs", type=Path, help="initramfs (default: cloudboot's bootstrap)")
    b.add_argument("--stub", type=Path, help="systemd-stub (default: Debian's systemd-boot-efi)")
    b.add_argument("--cmdline", help="kernel command line of the bootstrap kernel")
    b.add_argument("--plan", help="plan reference (cloudboot.plan=)")
    b.add_argument("--plan-file", type=Path, help="HCL plan embedded in the initramfs")
    b.add_argument("--target", help="target to boot (cloudboot.target=)")
    b.add_argument("--exit", choices=("kexec", "reboot"), help="handoff (cloudboot.exit=)")
    b.add_argument("--uki", type=Path, help="also write the UKI to this path")
    b.add_argument("-o", "--iso", default="boot.iso", help="output image (default boot.iso)")
    b.add_argument("--path", choices=("a", "b", "d"), default="a",
                   help="a: UKI + cloudboot-init (default); b: the native local-disk loader "
                        "(-o NAME.iso: hybrid ISO, else a GPT disk with one ESP; --cmdline "
                        "goes to \\cmdline); d: the native network loader")
    # Path D: what the network loader pulls (embedded in it; see cloudboot/loader/netconfig.py)
    b.add_argument("--registry", help="--path d: registry HOST:PORT (an IP literal always works)")
    b.add_argument("--repo", help="--path d: repository, e.g. debian/bookworm")
    d_ref = b.add_mutually_exclusive_group()
    d_ref.add_argument("--tag", help="--path d: tag of an image index or cloud-boot artifact")
    d_ref.add_argument("--digest", help="--path d: sha256:<hex> of an index or artifact")
    b.add_argument("--insecure", action="store_true", help="--path d: plain http, not https")
    b.set_defaults(func=cmd_build)

    c = sub.add_parser("cache-disk", help="create the Path C cache disk (idempotent)")
    c.add_argument("path")
    c.add_argument("size_mib", nargs="?", type=int, default=256, help="size in MiB (256)")
    c.add_argument("--force", action="store_true", help="replace a file that is not a cache disk")
    c.set_defaults(func=cmd_cache_disk)

    r = sub.add_parser("reset", help="remove cloudboot's Boot#### entries from a vars file")
    r.add_argument("--vars", required=True, help="OVMF/AAVMF variable store file")
    r.add_argument("--dry-run", action="store_true")
    r.set_defaults(func=cmd_reset)

    from cloudboot.cli import loader as cli_loader  # `cloudboot vars set` (Path B's vars)

    cli_loader.add_vars_parser(sub)

    pl = sub.add_parser("plan", help="check or show an HCL plan")
    plsub = pl.add_subparsers(dest="plan_command", required=True)
    pc = plsub.add_parser("check", help="parse, evaluate and validate a plan")
    pc.add_argument("file")
    pc.add_argument("--arch", type=_arch)
    pc.set_defaults(func=cmd_plan_check)
    ps = plsub.add_parser("show", help="the plan evaluated for one arch")
    ps.add_argument("file")
    ps.add_argument("--arch", type=_arch)
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=cmd_plan_show)

    i = sub.add_parser("inspect", help="describe a UKI, boot.iso, cache disk or vars file")
    i.add_argument("path")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_inspect)

    from cloudboot.cli import push as cli_push  # `cloudboot push …` (oras is imported lazily)

    cli_push.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as e:
        print(f"cloudboot {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
