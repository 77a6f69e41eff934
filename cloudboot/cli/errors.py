"""The one error type of the `cloudboot` command line, below every command module."""


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""
