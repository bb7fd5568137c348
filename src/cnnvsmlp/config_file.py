"""A config's text: a preset or YAML file read strictly, key=value overrides, one-line errors."""

import difflib
import json
from importlib import resources
from pathlib import Path
from typing import get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from cnnvsmlp.errors import UserError
from cnnvsmlp.models import VARIANTS

MAX_CONFIG_BYTES = 1 << 20


class ConfigError(UserError, ValueError):
    """A config file, preset name or override is invalid."""


# Short override keys for the fields people change most.
ALIASES = {
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "optimizer": "train.optimizer",
    "learning_rate": "train.learning_rate",
    "source": "source.kind",
    "idx_dir": "source.idx_dir",
    "tfds_data_dir": "source.tfds_data_dir",
}


def preset_names() -> list[str]:
    """Names of the bundled presets."""
    folder = resources.files("cnnvsmlp") / "presets"
    return sorted(Path(p.name).stem for p in folder.iterdir() if p.name.endswith(".yaml"))


def _at(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


_TAG = "tag:yaml.org,2002:"
_JSON_TAGS = ("str", "int", "float", "bool", "null", "seq", "map")
# What to write instead of a YAML type that JSON (and so a config) has no word for.
_NOT_JSON = {
    "binary": "base64 text as a plain string",
    "set": "a list, [a, b]",
    "omap": "a mapping, {a: 1}",
    "pairs": "a mapping, {a: 1}",
    "timestamp": "the date or time in quotes, as a string",
}


class _StrictLoader(yaml.SafeLoader):
    """YAML of JSON's types only: no aliases, no repeated keys; dates and times stay strings."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != f"{_TAG}timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def compose_node(self, parent, index):  # noqa: D102
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError(f"line {mark.line + 1}: YAML aliases (*name) are not allowed")
        return super().compose_node(parent, index)

    def construct_object(self, node, deep=False):  # noqa: D102
        kind = node.tag.removeprefix(_TAG) if node.tag.startswith(_TAG) else None
        if kind in _NOT_JSON:
            raise ConfigError(
                f"{_at(node.start_mark)}: a !!{kind} value is not a config value; "
                f"write {_NOT_JSON[kind]}"
            )
        if kind not in _JSON_TAGS:
            tag = node.tag.replace(_TAG, "!!")
            raise ConfigError(
                f"{_at(node.start_mark)}: the tag {tag} is not allowed in a config; "
                "write a plain value without it"
            )
        return super().construct_object(node, deep=deep)

    def construct_mapping(self, node, deep=False):  # noqa: D102
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise ConfigError(
                    f"{_at(key_node.start_mark)}: key {key_node.value!r} is not a name; "
                    "write it in quotes if it is one"
                )
            if key in seen:
                line = key_node.start_mark.line + 1
                raise ConfigError(f"line {line}: key {key!r} appears twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, where: str) -> object:
    """Parse a config's YAML text strictly; ConfigError names ``where``, the line and column."""
    if "\0" in text:
        raise ConfigError(
            f"{where}: holds a NUL byte at character {text.index(chr(0))}; not YAML text"
        )
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        at = f" at {_at(mark)}" if mark else ""
        problem = err.problem or err.context or err.__class__.__name__
        raise ConfigError(f"{where}: not valid YAML{at} ({problem})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML ({err})") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a config") from None


def _read_file(config: str, exists: bool) -> str:
    """The text of a YAML config file, refusing a folder, a dangling link or a huge file."""
    path = Path(config)
    if path.is_dir():
        raise ConfigError(f"{config}: is a folder; name a YAML config file or a preset")
    if not exists:
        if path.is_symlink():
            raise ConfigError(f"{config}: a link to {path.readlink()}, which does not exist")
        raise ConfigError(f"{config}: no such config file")
    if not path.is_file():
        raise ConfigError(f"{config}: not a regular file; name a YAML config file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a config")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None


def read_yaml(config: str) -> tuple[str, dict]:
    """``(where, fields)`` of a preset name or a YAML file's path, or ConfigError saying why not."""
    try:
        exists = Path(config).exists()
    except OSError as err:
        raise ConfigError(f"{config}: cannot read it ({err.strerror})") from None
    if config.endswith((".yaml", ".yml")) or exists:
        where, text = str(Path(config)), _read_file(config, exists)
    elif config in preset_names():
        text = (resources.files("cnnvsmlp") / "presets" / f"{config}.yaml").read_text()
        where = f"preset {config}"
    else:
        raise ConfigError(f"{config}: not a preset ({', '.join(preset_names())}) nor a YAML file")
    data = parse_yaml(text, where)
    if data is None:
        raise ConfigError(
            f"{where}: holds no fields; copy a preset (src/cnnvsmlp/presets/) and change it"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    return where, data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``data`` with ``key=value`` overrides applied: a dotted path or an alias, a YAML value."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value")
        path = ALIASES.get(key, key).split(".")
        if path == ["variants"] and not raw.lstrip().startswith("["):
            value = [v.strip() for v in raw.split(",")]
            if not all(value):
                raise ConfigError(
                    f"override {item!r}: {'an empty name' if any(value) else 'no name'} among the "
                    "variants; write variants=<name>,<name> with names from "
                    f"{', '.join(sorted(VARIANTS))} or module:function"
                )
        else:
            value = parse_yaml(raw, f"override {item!r}") if raw else None
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[path[-1]] = value
    return data


def _field_paths(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    """Every field's dotted path, keyed by that path and by its last name."""
    paths = {}
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.setdefault(name, path)
        paths[path] = path
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            for key, sub in _field_paths(info.annotation, f"{path}.").items():
                paths.setdefault(key, sub)
    return paths


def _did_you_mean(top: type[BaseModel], loc: tuple) -> str:
    """``; did you mean <field>?`` for an unknown field at ``loc`` of ``top``, or nothing."""
    model, prefix = top, ""
    for part in loc[:-1]:
        if get_origin(model) is dict:  # part is a key of the mapping
            model = get_args(model)[1]
        elif part in getattr(model, "model_fields", {}):
            model = model.model_fields[part].annotation
        else:
            return ""
        prefix += f"{part}."
    candidates = {name: f"{prefix}{name}" for name in getattr(model, "model_fields", {})}
    if model is top:
        candidates = {**_field_paths(top), **ALIASES, **candidates}
    close = difflib.get_close_matches(str(loc[-1]), candidates, n=1)
    return f"; did you mean {candidates[close[0]]}?" if close else ""


def one_line(err: ValidationError, where: str, model: type[BaseModel]) -> str:
    """A validation error of ``model`` as one line naming ``where``, the field and the problem."""
    errors = err.errors()
    # A misspelt field also leaves the right one missing: name the misspelling.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "literal_error":
        msg = f"got {first['input']!r}; {msg.lower()}"
    elif first["type"] == "extra_forbidden":
        msg = "unknown field" + _did_you_mean(model, first["loc"])
    elif first.get("input", "") is None:  # ``key=`` with nothing after it, or ``key: null``
        msg = f"needs a value ({msg.lower()}); write {loc}=<value>"
    return f"{where}: {loc}: {msg}" if loc else f"{where}: {msg}"
