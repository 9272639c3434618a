"""Read a CloudFormation YAML template into plain data, short-form tags included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES: dict[str, Path] = {
    "foundation": ROOT / "infra" / "foundation.yaml",
    "splitter": ROOT / "services" / "splitter" / "template.yaml",
    "transformer": ROOT / "services" / "transformer" / "template.yaml",
    "publisher": ROOT / "services" / "publisher" / "template.yaml",
    "reaper": ROOT / "services" / "reaper" / "template.yaml",
}


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_Loader.add_multi_constructor("!", _tag)


def load_template(path: Path) -> dict[str, Any]:
    """The template as dicts and lists; `!Sub x` becomes {"Fn::Sub": "x"}, and so on."""
    data = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a template")
    return data
