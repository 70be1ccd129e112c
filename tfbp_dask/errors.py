"""Exceptions that the command line turns into one clear line and an exit status."""

from __future__ import annotations


class InputError(Exception):
    """Bad input.

    ``str(err)`` is ONE line: the file, the problem and (where it applies) the first few offending
    ids/columns/rows.
    """


class ClusterUnavailable(Exception):
    """The Dask scheduler cannot be reached, has no workers, or runs another version."""
