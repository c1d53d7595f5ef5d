"""The project's own errors: one family under every package, so that a command catches what a user
can fix (and is told how) while a bug still shows its traceback.

Each package raises its kinds of it (DatasetError, RecipeError, WeightsUnavailable, ParityError,
RequestError, DeployError, ...); the generic kinds are here. The built-in class beside `MugError`
keeps what callers already catch (a missing file is still a FileNotFoundError). `command` is the
one place that maps the family to exit codes: 1 when a check ran and failed, 2 when the job
could not run.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable


class MugError(Exception):
    """Base of the family: the message names the file, flag or field at fault and what to do."""
    exit_code = 2


class SettingsError(MugError, ValueError):
    """A flag or recipe setting the job cannot use."""


class InputError(MugError, ValueError):
    """A file or folder given to a job is not what it needs (not a checkpoint, not a SavedModel, ...)."""


class NotFound(MugError, FileNotFoundError):
    """A file or folder a job needs does not exist."""


class OutputExists(MugError, FileExistsError):
    """The job would overwrite earlier results."""


class JobFailed(MugError, RuntimeError):
    """A step of the job failed on valid input (a conversion, a fresh process, an outside tool)."""


class CheckFailed(MugError):
    """A check ran and the answer is no (exit 1, not 2: the job itself worked)."""
    exit_code = 1


def command(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a CLI's `main`: an error of the family prints `error: MESSAGE` on stderr and becomes its
    exit code; anything else propagates, with its traceback."""

    @functools.wraps(main)
    def run(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except MugError as err:
            print(f"error: {err}", file=sys.stderr)
            return err.exit_code

    return run
