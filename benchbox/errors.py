"""User-facing errors: the CLI prints their message (no traceback) and exits with code 2."""


class BenchboxError(Exception):
    """A problem with the user's input or configuration, with a message that says what to do."""
