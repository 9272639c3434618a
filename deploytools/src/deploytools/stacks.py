"""The pipeline's stacks: the foundation and one per service, each a plain CloudFormation
template in the repository (the file cfn-lint checks is the file that is deployed)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES: dict[str, Path] = {
    "foundation": ROOT / "infra" / "foundation.yaml",
    "splitter": ROOT / "services" / "splitter" / "template.yaml",
    "transformer": ROOT / "services" / "transformer" / "template.yaml",
    "publisher": ROOT / "services" / "publisher" / "template.yaml",
    "reaper": ROOT / "services" / "reaper" / "template.yaml",
}
STACKS = tuple(TEMPLATES)
SERVICES = tuple(s for s in STACKS if s != "foundation")
STACK_PREFIX = "gro-"


def stack_name(stack: str) -> str:
    """The CloudFormation stack name of `stack`."""
    return STACK_PREFIX + stack
