"""`cloudboot push artifact|plan|index|multi`: put boot artifacts and plans in a registry.

Host only (oras-py, imported when a push runs). Every command prints the pushed reference
and its manifest digest.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from cloudboot.cli.errors import CliError

USAGE_MULTI = "os/arch[/variant],kernel=F[,initrd=F…][,modules=F…][,cmdline=T]"


def _platform(text: str) -> Any:
    from cloudboot.oci.manifest import Platform

    try:
        return Platform.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--insecure", action="store_true",
                   help="plain http for refs without a scheme (a lab registry)")
    p.add_argument("--user", help="basic auth user (password from CLOUDBOOT_REGISTRY_PASSWORD)")


def _auth(args: argparse.Namespace) -> dict[str, Any]:
    return {"insecure": args.insecure, "username": args.user,
            "password": os.environ.get("CLOUDBOOT_REGISTRY_PASSWORD") if args.user else None}


def add_parser(sub: Any) -> None:
    """Add `push` to the `cloudboot` subparsers; handlers are set with set_defaults(func=)."""
    push = sub.add_parser("push", help="push kernels, initrds, plans and indexes to a registry")
    psub = push.add_subparsers(dest="push_command", required=True)
    a = psub.add_parser("artifact", help="kernel/initrd/modules/cmdline as one manifest")
    a.add_argument("--platform", type=_platform, required=True, help="os/arch[/variant]")
    a.add_argument("--kernel", type=Path)
    a.add_argument("--initrd", type=Path, action="append", default=[])
    a.add_argument("--modules", type=Path, action="append", default=[])
    a.add_argument("--cmdline")
    a.add_argument("ref")
    _common(a)
    a.set_defaults(func=cmd_artifact)
    pl = psub.add_parser("plan", help="an HCL plan (checked first)")
    pl.add_argument("--file", type=Path, required=True)
    pl.add_argument("--no-check", action="store_true", help="push even if the plan has errors")
    pl.add_argument("ref")
    _common(pl)
    pl.set_defaults(func=cmd_plan)
    ix = psub.add_parser("index", help="an OCI image index over pushed manifests")
    ix.add_argument("-p", "--entry", action="append", required=True, metavar="OS/ARCH=REF",
                    help="repeat per platform")
    ix.add_argument("ref")
    _common(ix)
    ix.set_defaults(func=cmd_index)
    m = psub.add_parser("multi", help="one artifact per platform (REF-<arch> tags) + an index")
    m.add_argument("-a", "--artifact", action="append", required=True, metavar=USAGE_MULTI)
    m.add_argument("ref")
    _common(m)
    m.set_defaults(func=cmd_multi)


def _print(p: Any) -> None:
    print(f"{p.ref}@{p.digest} ({p.media_type}, {p.size} bytes)")


def _fail(e: Exception) -> int:
    raise CliError(str(e)) from None


def cmd_artifact(args: argparse.Namespace) -> int:
    from cloudboot.oci.client import OCIError
    from cloudboot.oci.push import push_artifact

    try:
        _print(push_artifact(args.ref, platform=args.platform, kernel=args.kernel,
                             initrds=args.initrd, modules=args.modules, cmdline=args.cmdline,
                             **_auth(args)))
    except (OCIError, OSError, ValueError) as e:
        return _fail(e)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from cloudboot.oci.client import OCIError
    from cloudboot.oci.push import push_plan
    from cloudboot.plan import PlanError, load_plan

    try:
        if not args.no_check:
            load_plan(args.file)
        _print(push_plan(args.ref, args.file, **_auth(args)))
    except PlanError as e:
        return _fail(ValueError(f"{e} (--no-check pushes it anyway)"))
    except (OCIError, OSError, ValueError) as e:
        return _fail(e)
    return 0


def _entries(values: list[str]) -> list[tuple[Any, str]]:
    out = []
    for v in values:
        plat, sep, ref = v.partition("=")
        if not sep or not ref:
            raise ValueError(f"-p {v}: expected os/arch[/variant]=REF")
        out.append((_platform(plat), ref))
    return out


def cmd_index(args: argparse.Namespace) -> int:
    from cloudboot.oci.client import OCIError
    from cloudboot.oci.push import push_index

    try:
        _print(push_index(args.ref, _entries(args.entry), **_auth(args)))
    except (OCIError, OSError, ValueError, argparse.ArgumentTypeError) as e:
        return _fail(e)
    return 0


def parse_multi(spec: str) -> dict[str, Any]:
    plat, *fields = spec.split(",")
    out: dict[str, Any] = {"platform": _platform(plat), "initrds": [], "modules": []}
    for f in fields:
        key, sep, value = f.partition("=")
        if not sep or not value:
            raise ValueError(f"--artifact {spec}: {f!r} is not key=value ({USAGE_MULTI})")
        if key == "kernel":
            out["kernel"] = Path(value)
        elif key in ("initrd", "modules"):
            out["initrds" if key == "initrd" else "modules"].append(Path(value))
        elif key == "cmdline":
            out["cmdline"] = value
        else:
            raise ValueError(f"--artifact {spec}: unknown key {key!r} ({USAGE_MULTI})")
    return out


def cmd_multi(args: argparse.Namespace) -> int:
    from cloudboot.oci.client import OCIError
    from cloudboot.oci.push import push_artifact, push_index
    from cloudboot.oci.ref import parse_ref

    try:
        ref = parse_ref(args.ref)
        base = args.ref.rsplit(":", 1)[0] if ref.tag else args.ref
        entries = []
        for spec in args.artifact:
            kw = parse_multi(spec)
            plat = kw["platform"]
            tag = f"{ref.tag or 'latest'}-{plat.architecture}{plat.variant or ''}"
            pushed = push_artifact(f"{base}:{tag}", **kw, **_auth(args))
            _print(pushed)
            entries.append((plat, pushed.ref))
        _print(push_index(args.ref, entries, **_auth(args)))
    except (OCIError, OSError, ValueError, argparse.ArgumentTypeError) as e:
        return _fail(e)
    return 0
