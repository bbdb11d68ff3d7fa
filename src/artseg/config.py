"""Hyper-parameters: one dataclass per method with the study's values as defaults, named presets.

`study` is the thesis' settings (the default); `small` trains in minutes on 2 CPU cores.
Explicit CLI flags and `--set key=value` override the preset; values are parsed by field type.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar, get_type_hints


class ConfigError(ValueError):
    """A bad hyper-parameter name or value; the message names it."""


@dataclass
class MethodConfig:
    """Base class of every method's hyper-parameters.

    A config enters the program in one of two ways, and both check it with `validate()`, the one set
    of rules (a bad value is a `ConfigError` naming the field): `build()` (presets plus the user's
    `--set` values) and `from_dict()` (a saved model's config.json).
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"study": {}, "small": {}}
    # Rules every method shares, checked before its own `validate`: numbers are finite and not
    # negative (no hyper-parameter of any method means anything below zero), and counts of epochs and
    # batch sizes are at least 1 (0 epochs saved an untrained model without a word).
    AT_LEAST_ONE_SUFFIXES: ClassVar[tuple[str, ...]] = ("epochs", "batch_size", "_batch")

    def check_numbers(self) -> None:
        """Raise ConfigError for a NaN, infinite or negative number, or a zero epoch count / batch size."""
        for f in fields(self):
            value = getattr(self, f.name)
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    continue
                if not math.isfinite(item) or item < 0:
                    raise ConfigError(f"hyper-parameter {f.name!r}: {item} must be a finite number >= 0")
                if item < 1 and f.name.endswith(self.AT_LEAST_ONE_SUFFIXES):
                    raise ConfigError(f"hyper-parameter {f.name!r}: {item} must be >= 1")

    def validate(self) -> None:
        """Raise ConfigError for a value the method cannot use (subclasses add their rules)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """A validated config from saved values; unknown keys are ignored (written by other versions)."""
        if not isinstance(values, dict):
            raise ConfigError(f"hyperparameters must be a JSON object, found {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        return cls._checked({k: v for k, v in values.items() if k in known})

    @classmethod
    def _checked(cls, values: dict[str, Any]):
        try:
            config = cls(**values)
        except TypeError as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from None
        try:
            config.check_numbers()
            config.validate()
        except TypeError as exc:  # a saved value of the wrong type (e.g. a string where a number belongs)
            raise ConfigError(f"{cls.__name__}: a value of the wrong type ({exc})") from None
        return config

    @classmethod
    def build(cls, preset: str = "study", overrides: dict[str, Any] | None = None):
        """Preset values, then overrides (strings are parsed by the field's type)."""
        if preset not in cls.PRESETS:
            raise ConfigError(f"unknown preset {preset!r} (use one of {', '.join(cls.PRESETS)})")
        values = dict(cls.PRESETS[preset])
        hints = get_type_hints(cls)
        names = {f.name for f in fields(cls)}
        for key, value in (overrides or {}).items():
            key = key.replace("-", "_")
            if key not in names:
                raise ConfigError(f"unknown hyper-parameter {key!r} for {cls.__name__} (known: {', '.join(sorted(names))})")
            values[key] = parse_value(value, hints[key], key) if isinstance(value, str) else value
        return cls._checked(values)


def parse_value(text: str, hint: Any, key: str) -> Any:
    """Parse a `--set` string into the field's declared type."""
    kind = str(hint)
    try:
        if hint is bool or kind == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if hint is str:
            return text
        if "None" in kind and text.lower() in ("none", "null", ""):
            return None
        if "int" in kind and "float" not in kind and "str" not in kind and "list" not in kind and "tuple" not in kind:
            return int(text)
        if "float" in kind and "list" not in kind and "tuple" not in kind:
            return float(text)
        if "list" in kind or "tuple" in kind:
            if text.startswith("["):
                return json.loads(text)
            items = [t.strip() for t in text.split(",") if t.strip()]
            if "int" in kind:
                return [int(t) for t in items]
            if "float" in kind:
                return [float(t) for t in items]
            return items
        return text
    except (ValueError, json.JSONDecodeError):
        raise ConfigError(f"bad value {text!r} for hyper-parameter {key!r} (expected {kind})") from None


def parse_set_options(items: list[str] | None) -> dict[str, str]:
    """`["lr=1e-3", "depth=4"]` -> {"lr": "1e-3", "depth": "4"}."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def describe_fields(cls: type[MethodConfig]) -> str:
    """A table of `cls`'s hyper-parameters: name, type, study value, small value and the field's own comment.

    The comment is read from the dataclass source (the `# ...` after each field), so the listing and
    the code cannot disagree.
    """
    import inspect
    import re

    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for match in re.finditer(r"^    (\w+): [^=\n]+=[^#\n]*#\s*(.+)$", source, flags=re.M):
            comments[match.group(1)] = match.group(2).strip()
    study, small = cls.build("study"), cls.build("small") if "small" in cls.PRESETS else None
    hints = get_type_hints(cls)
    rows = [("name", "type", "study", "small", "")]
    for f in fields(cls):
        kind = getattr(hints[f.name], "__name__", str(hints[f.name])).replace("typing.", "")
        small_value = getattr(small, f.name) if small is not None else ""
        rows.append((f.name, kind, repr(getattr(study, f.name)), repr(small_value), comments.get(f.name, "")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(4)) + ("  " + r[4] if r[4] else "") for r in rows)
