"""Compile a batch of Python sources to sourceless .pyc files with THIS interpreter.

Run by `foreignpyc` as a script under the target's own interpreter (a foreign arch under
qemu-user), never imported by the builder: the code-object marshal format and the .pyc magic
belong to the interpreter that compiles, so the target Python must do it. Standard library only,
and no syntax newer than 3.8 (it runs on whatever Python the target ships).

    python3.X -I -S pycdriver.py JOBS.json

JOBS.json: {"jobs": [[source path, path shown in tracebacks, optimize level, output path], ...]}.
Writes each output as magic + 12 zero bytes (timestamp form, never checked for a sourceless
file) + marshal(code), and prints one JSON line: {"magic": hex, "version": ..., "count": n,
"errors": [...]}; exit status 1 when any source failed to compile.
"""

import importlib.util
import json
import marshal
import sys


def main(argv: list) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: pycdriver.py JOBS.json\n")
        return 2
    with open(argv[1], encoding="utf-8") as f:
        jobs = json.load(f)["jobs"]
    magic = importlib.util.MAGIC_NUMBER
    errors = []
    count = 0
    for source_path, shown_path, optimize, out_path in jobs:
        try:
            with open(source_path, "rb") as f:
                source = f.read()
            code = compile(source, shown_path, "exec", dont_inherit=True, optimize=optimize)
        except (OSError, SyntaxError, ValueError) as e:
            errors.append(f"{source_path}: {type(e).__name__}: {e}")
            continue
        with open(out_path, "wb") as f:
            f.write(magic + bytes(12) + marshal.dumps(code))
        count += 1
    print(json.dumps({"magic": magic.hex(), "version": sys.version.split()[0],
                      "count": count, "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
