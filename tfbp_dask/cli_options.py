"""The command's options, derived from ``WorkflowConfig``'s fields.

A field's default, help and section are written once, in ``config.py``; here they
become typer options ``--{name}`` (flags without a value placeholder), beside the few
options that belong to the command and not to one TF's run (a batch's list of TFs,
``--resume``, logging). ``config_from_options`` turns what typer parsed back into a
``WorkflowConfig``.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from .config import INPUT_FILES, OUTPUT, SYSTEM, WorkflowConfig

_HINTS = typing.get_type_hints(WorkflowConfig)

#: The command's own options (not fields of one TF's run), in ``--help`` order.
COMMAND_OPTIONS: dict[str, tuple[Any, Any, typer.models.OptionInfo]] = {
    "perturbed_tf": (
        str | None,
        None,
        typer.Option(
            "--perturbed_tf",
            help="The perturbed TF: a column of both files (case-sensitive); a comma list, "
            "or 'all', runs a batch.",
            rich_help_panel=INPUT_FILES,
        ),
    ),
    "perturbed_tfs_file": (
        Path | None,
        None,
        typer.Option(
            "--perturbed_tfs_file",
            help="Batch: a file with one perturbed TF per line.",
            rich_help_panel=INPUT_FILES,
        ),
    ),
    "max_concurrent_tfs": (
        int | None,
        None,
        typer.Option(
            "--max_concurrent_tfs",
            help="Batch: TFs in flight at once (default: 2 per worker).",
            rich_help_panel=SYSTEM,
        ),
    ),
    "resume": (
        Path | None,
        None,
        typer.Option(
            "--resume",
            help="Finish an interrupted run: its .partial directory; for a batch, the "
            "batch's output directory (same inputs and options).",
            rich_help_panel=OUTPUT,
        ),
    ),
    "log_level": (
        str,
        "INFO",
        typer.Option(
            "--log-level",
            "--log_level",
            help="DEBUG, INFO, WARNING or ERROR.",
            rich_help_panel=SYSTEM,
        ),  # fmt: skip
    ),
    "log_handler": (
        str,
        "console",
        typer.Option(
            "--log-handler",
            "--log_handler",
            help="console or file. Accepted for compatibility with tfbpmodeling command "
            "lines and otherwise ignored: the log always goes to the console and to the "
            "run directory's log file.",
            rich_help_panel=SYSTEM,
        ),
    ),
}
LOG_HANDLERS = ("console", "file")
_FIRST = ("perturbed_tf", "perturbed_tfs_file")  # listed with the input files


def _field_parameter(field: Field) -> inspect.Parameter:
    """One ``WorkflowConfig`` field as a typer option ``--{name}``."""
    meta = field.metadata
    kind = _HINTS[field.name]
    default = field.default
    if "parse" in meta:  # typed as text, e.g. a comma list
        kind, default = str | None, None
    show_default = meta.get("shown_default", True)
    info = typer.Option(
        f"--{field.name}",
        show_default=show_default,
        help=meta["help"],
        rich_help_panel=meta["panel"],
        metavar="" if kind is bool else None,  # a flag takes no value: no <bool> in --help
    )
    return _parameter(field.name, kind, default, info)


def _parameter(name: str, kind: Any, default: Any, info: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[kind, info],
        default=inspect.Parameter.empty if default is MISSING else default,
    )


def cli_fields() -> list[Field]:
    return [field for field in fields(WorkflowConfig) if field.metadata.get("cli")]


def with_options(function: Callable[..., None]) -> Callable[..., None]:
    """``function(**given)`` with a signature typer reads: every option of the command."""
    command = [_parameter(name, *COMMAND_OPTIONS[name]) for name in COMMAND_OPTIONS]
    first = [p for p in command if p.name in _FIRST]
    rest = [p for p in command if p.name not in _FIRST]
    config = [_field_parameter(field) for field in cli_fields()]
    required = [p for p in config if p.default is inspect.Parameter.empty]
    optional = [p for p in config if p.default is not inspect.Parameter.empty]
    function.__signature__ = inspect.Signature([*required, *first, *optional, *rest])
    return function


def config_from_options(given: dict[str, Any], **values: Any) -> WorkflowConfig:
    """The ``WorkflowConfig`` of the parsed options (comma lists parsed), plus ``values``."""
    for field in cli_fields():
        value = given[field.name]
        parse = field.metadata.get("parse")
        if value is not None and parse is not None:
            values[field.name] = parse(value)
        elif value is not None or parse is None:
            values[field.name] = value
    return WorkflowConfig(**values)
