"""User-facing errors: the CLI prints their message (no traceback) and exits with their code.

Exit codes have one meaning each (README, "Exit codes"): 0 ok, 1 a method failed or the gate
failed, 2 bad input or configuration (`BenchboxError`), 3 the environment (`EnvironmentProblem`:
an unwritable folder, a full disk), 130 interrupted.
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130


class BenchboxError(Exception):
    """A problem with the user's input or configuration, with a message that says what to do."""

    exit_code = EXIT_BAD_INPUT


class EnvironmentProblem(BenchboxError):
    """The machine, not the input: a folder that cannot be written, a full disk."""

    exit_code = EXIT_ENVIRONMENT
