"""What a matrix run is shown as: JUnit XML for CI systems (junit.py), the HTML grid
(html.py), KernelCI's KCIDB JSON (kcidb.py). Each reads a run directory
(docs/run-directory.md) and writes into it."""
