"""Walk the guest's import closure with THIS interpreter (the target's, under qemu-user).

Run by `foreignpyc` as a script, never imported by the builder. The host's Python 3.11 cannot
parse a 3.12+ stdlib (PEP 701 f-strings in traceback.py, PEP 695 generics, …), so for a foreign
runtime the same `closure.Finder` runs inside the target interpreter, over the same roots.
Standard library only (plus cloudboot.initramfs.closure, itself standard library only).

    python3.X -I -S -B closuredriver.py SPEC.json

SPEC.json: {"import_root", "entries", "roots": [{"host", "guest", "extensions", "only"}],
"builtins", "exclude", "follow_lazy", "seeds": [[name, optional, droppable], ...] (optional)}.
Prints one JSON line describing the closure.
"""

import json
import sys
from pathlib import Path


def main(argv: list) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: closuredriver.py SPEC.json\n")
        return 2
    with open(argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    sys.path.insert(0, spec["import_root"])
    from cloudboot.initramfs import closure

    roots = [closure.Root(Path(r["host"]), r["guest"], r["extensions"],
                          None if r["only"] is None else frozenset(r["only"]))
             for r in spec["roots"]]
    try:
        found = closure.find_closure(spec["entries"], roots, spec["builtins"], spec["exclude"],
                                     spec["follow_lazy"],
                                     [(n, bool(o), bool(d)) for n, o, d in spec.get("seeds", [])])
    except closure.ClosureError as e:
        print(json.dumps({"error": str(e)}))
        return 1

    def table(t: dict) -> dict:
        return {k: sorted(v) for k, v in t.items()}

    print(json.dumps({
        "version": sys.version.split()[0],
        "modules": [[m.name, m.kind, None if m.host_path is None else str(m.host_path),
                     m.guest_path] for m in found.modules.values()],
        "missing": table(found.missing), "optional_missing": table(found.optional_missing),
        "excluded": table(found.excluded), "lazy_skipped": table(found.lazy_skipped),
        "via": found.via,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
