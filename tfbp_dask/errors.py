"""Exceptions that the command line turns into one clear line and an exit status."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input.

    ``str(err)`` is ONE line: the file, the problem and (where it applies) the first few offending
    ids/columns/rows.
    """


class ClusterUnavailable(Exception):
    """The Dask scheduler cannot be reached, has no workers, or runs another version."""


def check_input_file(path: Path, role: str) -> None:
    """Refuse an input file that is missing or a directory, without reading it.

    Cheap enough to run before anything heavy is imported or started; reading
    it (``tfbp_dask.inputs``) checks the rest. ``role`` starts the message:
    ``"{role} file {path}: does not exist"``.
    """
    path = Path(path)
    label = f"{role} file {path}"
    # Even the checks can fail (a name too long for the file system, a parent directory that
    # cannot be searched): every OSError is a file that cannot be read.
    try:
        if path.is_dir():
            problem = "is a directory, not a file"
        elif not path.exists():
            problem = "does not exist"
        else:
            return
    except OSError as err:
        problem = f"cannot be read ({err.strerror or err})"
    raise InputError(" ".join(f"{label}: {problem}".splitlines()))  # one line, whatever the name
