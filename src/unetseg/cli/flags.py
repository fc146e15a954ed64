"""Command-line flags made from option fields (``core.config.option``): one ``--flag`` per field with its help,
choices and default from the field, read back through the same checks as YAML (``coerce``)."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from unetseg.core.config import SECTIONS, coerce, flag_name


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per config field, grouped by section; unset flags stay ``None``."""
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{section} options")
        skip = ("path",) if section == "data" else ()
        flag = _augment_flag if section == "augment" else None
        add_dataclass_arguments(group, cls, section, skip=skip, flag=flag)


def _augment_flag(name: str) -> str:
    return "--augment" if name == "enabled" else "--aug-" + name.replace("_", "-")


def add_dataclass_arguments(group: Any, cls: type, dest_prefix: str, skip: tuple[str, ...] = (),
                            flag: Any = None) -> None:
    """One ``--flag`` per field of dataclass ``cls`` (help and choices from its metadata), stored as
    ``<dest_prefix>.<field>``; unset flags stay ``None`` so the dataclass's defaults stay in one place."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or "help" not in f.metadata:
            continue
        name = flag(f.name) if flag else flag_name(f)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = f.metadata.get("default_text") or default
        help_text = f"{f.metadata['help']} [default: {shown}]"
        dest = f"{dest_prefix}.{f.name}"
        if hints[f.name] is bool:
            group.add_argument(name, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(name, dest=dest, default=None, metavar=f.metadata.get("metavar", f.name.upper()),
                               help=help_text, choices=f.metadata.get("choices"))


def dataclass_from_args(cls: type, args: argparse.Namespace, dest_prefix: str, defaults: dict[str, Any] | None = None,
                        **fixed: Any) -> Any:
    """Build ``cls`` from the flags of ``add_dataclass_arguments`` (checked and converted as in YAML); flags not
    given take ``defaults`` (e.g. settings stored in a model file), then the dataclass's own defaults."""
    values: dict[str, Any] = dict(defaults or {})
    for f in dataclasses.fields(cls):
        value = getattr(args, f"{dest_prefix}.{f.name}", None)
        if value is not None:
            values[f.name] = coerce(cls, f, value, flag_name(f))
    return cls(**{**values, **fixed})


def overrides_from_args(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Collect the flags the user set into ``{section: {key: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in vars(args).items():
        if "." in key and value is not None:
            section, name = key.split(".", 1)
            out.setdefault(section, {})[name] = value
    return out
