"""Flags of the training binaries, generated from the config dataclasses.

Every field of a stage's config is a flag of the same name, with its default, type and
help (`field.metadata["help"]`, `"choices"` for enums); tuples are comma-separated lists.
`define_flags` and `config_from_flags` take any such dataclass (conceptmask-world's
`WorldConfig` too). Only the binaries call these (flags are defined when a binary starts,
never on import).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from absl import app, flags

from conceptmask_tf.errors import DataError
from conceptmask_tf.training.config import TrainingConfig

if TYPE_CHECKING:  # training.fit imports TensorFlow
    from conceptmask_tf.training.fit import TrainResult

# Flags defined here belong to the binary that asks for them (shown by its --help).
flags.disclaim_key_flags()

ConfigT = TypeVar("ConfigT")


def define_flags(config_cls: type, fv: flags.FlagValues = flags.FLAGS,
                 required_fields: bool = True) -> None:
    """Defines one flag per field of the dataclass `config_cls`; fields without a default
    are required (unless `required_fields` is False)."""
    hints = typing.get_type_hints(config_cls)
    required = []
    for field in dataclasses.fields(config_cls):
        kind = _base_type(hints[field.name])
        has_default = field.default is not dataclasses.MISSING
        default = field.default if has_default else None
        help_text = field.metadata.get("help", field.name)
        choices = field.metadata.get("choices")
        if callable(choices):  # a registry's names, e.g. the backbones
            choices = choices()
        if not has_default:
            required.append(field.name)
        if choices:
            flags.DEFINE_enum(field.name, default, choices, help_text, flag_values=fv)
        elif kind is bool:
            flags.DEFINE_bool(field.name, default, help_text, flag_values=fv)
        elif kind is int:
            flags.DEFINE_integer(field.name, default, help_text, flag_values=fv)
        elif kind is float:
            flags.DEFINE_float(field.name, default, help_text, flag_values=fv)
        elif kind is tuple:
            flags.DEFINE_list(field.name, None if default is None else [str(v) for v in default],
                              help_text, flag_values=fv)
        else:
            flags.DEFINE_string(field.name, default, help_text, flag_values=fv)
    if required_fields:
        flags.mark_flags_as_required(required, flag_values=fv)


def config_from_flags(config_cls: type[ConfigT],
                      fv: flags.FlagValues = flags.FLAGS) -> ConfigT:
    """The config named by parsed flags (lists converted to typed tuples).

    Raises:
        ValueError: A list item of the wrong type, or an invalid config.
    """
    return config_cls(**config_values(config_cls, fv))


def config_values(config_cls: type, fv: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
    """Every field's value from parsed flags (lists converted to typed tuples), before
    the config checks them.

    Raises:
        ValueError: A list item of the wrong type.
    """
    return _field_values(config_cls, fv, only_present=False)


def overrides_from_args(config_cls: type, args: list[str]) -> dict[str, Any]:
    """Typed field values of the flags given in `args` (e.g. ["--epochs=3"]), for
    `presets.Preset.stage_config(overrides=...)`.

    Raises:
        ValueError: An unknown flag or a bad value (the message names it).
    """
    fv = flags.FlagValues()
    define_flags(config_cls, fv, required_fields=False)  # the paths are the run's
    try:
        fv(["overrides", *args])
    except flags.Error as e:
        raise ValueError(str(e)) from None
    return _field_values(config_cls, fv, only_present=True)


def _field_values(config_cls: type, fv: flags.FlagValues, only_present: bool
                  ) -> dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(config_cls):
        if only_present and not fv[field.name].present:
            continue
        value = getattr(fv, field.name)
        if _base_type(hints[field.name]) is tuple and value is not None:
            item_type = typing.get_args(hints[field.name])[0]
            try:
                value = tuple(item_type(v) for v in value)
            except ValueError:
                raise ValueError(f"--{field.name}: expected comma-separated "
                                 f"{item_type.__name__} values, got {value}") from None
        values[field.name] = value
    return values


def _base_type(hint: Any) -> type:
    """int for `int | None`, tuple for `tuple[int, ...]`, etc."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return _base_type(next(a for a in typing.get_args(hint) if a is not type(None)))
    return typing.get_origin(hint) or hint


def run_training(config_cls: type[TrainingConfig],
                 train: Callable[[TrainingConfig], TrainResult], program: str,
                 argv: list[str], fv: flags.FlagValues = flags.FLAGS) -> int:
    """A training binary's `main`: flags -> config -> `train` -> summary on stdout.

    Returns:
        0 on success; 1 after printing a bad-input or unsupported-setting error.

    Raises:
        app.UsageError: Extra arguments or an invalid flag combination.
    """
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        config = config_from_flags(config_cls, fv)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    logging.getLogger("conceptmask_tf").setLevel(logging.INFO)
    try:
        result = train(config)
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"{program}: {e}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0
