"""One main for every entry point, however it is started (`videomaker X`, `python -m jobs.X`, `ray job submit`).

It configures logging (`--log-level`) and turns the outcome into the exit code a scheduler reads:

    0  success
    1  the job failed (an error while running, items that failed without --allow-failures)
    2  bad input or config: nothing was run
    3  nightly: the gate found a regression (the job itself ran fine)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from enum import IntEnum

logger = logging.getLogger("jobs")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    BAD_INPUT = 2
    REGRESSION = 3


def add_log_level_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Logging of the job and its libraries (default INFO).",
    )


def configure_logging(level: str) -> None:
    """Log lines to stderr, which `ray job submit` captures as the job's log; a handler already there is kept."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger().setLevel(level)


def _is_worker_error(error: BaseException) -> bool:
    """A Ray error (a task or actor failed) is a failure of the job, even when it also is a ValueError.

    Ray re-raises a worker's exception as a class deriving from both RayTaskError and the cause.
    """
    ray = sys.modules.get("ray")
    return ray is not None and isinstance(error, ray.exceptions.RayError)


# Bad input: a value, a file or a location the user named. Other OSErrors (a connection reset, a
# timeout, a full disk) happen while the job runs and are failures worth retrying, not bad input.
BAD_INPUT_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def execute(command: str, run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a parsed command; every outcome becomes an `ExitCode` and a message naming the command."""
    configure_logging(getattr(args, "log_level", "INFO"))
    try:
        return int(run(args) or ExitCode.OK)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return ExitCode.FAILED
    except Exception as error:  # noqa: BLE001 - the traceback goes to the log, the code to the scheduler
        if isinstance(error, BAD_INPUT_ERRORS) and not _is_worker_error(error):
            print(f"{command}: error: {error}", file=sys.stderr)
            return ExitCode.BAD_INPUT
        logger.exception("%s failed", command)
        print(f"{command}: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return ExitCode.FAILED


def module_main(
    module_name: str,
    description: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int | None],
    argv: list[str] | None = None,
) -> int:
    """`python -m jobs.X`: the same arguments, logging and exit codes as `videomaker X`."""
    prog = f"python -m {module_name}"
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_log_level_argument(parser)
    add_arguments(parser)
    return execute(prog, run, parser.parse_args(argv))


def add_allow_failures_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-failures", action="store_true", help="Exit 0 even when some items failed (they are listed and recorded either way)."
    )


def failures_exit_code(failed: int, args: argparse.Namespace) -> int:
    """1 when items failed, unless the user allowed it."""
    if failed and not getattr(args, "allow_failures", False):
        print(f"{failed} item(s) failed; exit {int(ExitCode.FAILED)} (--allow-failures to accept)", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK
