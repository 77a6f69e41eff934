"""The native UEFI loaders of Paths B and D: build (compile.py) and boot media (media.py).

The C sources live in `loader/` at the top of the repository (`loader/lib` shared,
`loader/b` Path B, `loader/d` Path D).
"""
