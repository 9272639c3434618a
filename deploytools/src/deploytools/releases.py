"""Releases: a label per deployed service, what it declares of the contracts, and the bundle it
ran, recorded beside the bundles so that any earlier release can be deployed again (rollback).

    s3://gro-artifacts-ACCOUNT-REGION/releases/{service}/{label}.json

A release is also written on its stack as tags (`gro:version`, `gro:produces`, `gro:accepts`),
which `ingest versions` reads to say what runs where and whether every producer's output is
accepted by the consumer deployed beside it.
"""

from __future__ import annotations

import subprocess
import time
import tomllib
from typing import Any

import msgspec

from deploytools.stacks import ROOT

TAG_VERSION = "gro:version"
TAG_PRODUCES = "gro:produces"
TAG_ACCEPTS = "gro:accepts"
INDEX_PREFIX = "releases/"


class Release(msgspec.Struct, frozen=True, kw_only=True):
    """One release of one service."""

    service: str
    label: str
    code_key: str
    produces: dict[str, int]
    accepts: dict[str, list[int]]
    released_at: int


def declared(service: str) -> tuple[dict[str, int], dict[str, list[int]]]:
    """What the service's pyproject declares it produces and accepts."""
    meta = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    contracts = meta.get("tool", {}).get("gro", {}).get("contracts", {})
    return dict(contracts.get("produces", {})), {
        k: list(v) for k, v in contracts.get("accepts", {}).items()
    }


def default_label(service: str) -> str:
    """The package version and the commit: `0.1.0+3f2a1c9`, `+dirty` when the service's
    files have uncommitted changes."""
    meta = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    version = str(meta["project"]["version"])
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=7", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--",
                f"services/{service}",
                "contracts",
                "servicekit",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{version}+unknown"
    return f"{version}+{commit}" + (".dirty" if dirty else "")


def _index_key(service: str, label: str) -> str:
    return f"{INDEX_PREFIX}{service}/{label}.json"


def find(s3: Any, bucket: str, service: str, label: str) -> Release | None:
    """The recorded release `label` of `service`, if there is one."""
    try:
        body = s3.get_object(Bucket=bucket, Key=_index_key(service, label))["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    except s3.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            return None
        raise
    return msgspec.json.decode(body, type=Release)


def record(s3: Any, bucket: str, service: str, label: str, code_key: str) -> Release:
    """Write down a release of the checkout."""
    produces, accepts = declared(service)
    release = Release(
        service=service,
        label=label,
        code_key=code_key,
        produces=produces,
        accepts=accepts,
        released_at=int(time.time()),
    )
    s3.put_object(
        Bucket=bucket,
        Key=_index_key(service, label),
        Body=msgspec.json.encode(release),
        ContentType="application/json",
    )
    return release


def tags(release: Release) -> list[dict[str, str]]:
    """The stack tags that say which release runs."""
    return [
        {"Key": TAG_VERSION, "Value": release.label},
        {
            "Key": TAG_PRODUCES,
            "Value": " ".join(f"{k}@{v}" for k, v in sorted(release.produces.items())),
        },
        {
            "Key": TAG_ACCEPTS,
            "Value": " ".join(
                f"{k}@{','.join(map(str, v))}" for k, v in sorted(release.accepts.items())
            ),
        },
    ]


def parse_produces(tag: str) -> dict[str, int]:
    """`A@1 B@2` -> {"A": 1, "B": 2}."""
    out = {}
    for item in tag.split():
        name, _, version = item.partition("@")
        out[name] = int(version)
    return out


def parse_accepts(tag: str) -> dict[str, list[int]]:
    """`A@1,2 B@1` -> {"A": [1, 2], "B": [1]}."""
    out = {}
    for item in tag.split():
        name, _, versions = item.partition("@")
        out[name] = [int(v) for v in versions.split(",") if v]
    return out


def mismatches(
    deployed: dict[str, tuple[dict[str, int], dict[str, list[int]]]],
) -> list[str]:
    """Every producer output a deployed consumer does not accept, as a warning line."""
    found = []
    for producer, (produces, _) in sorted(deployed.items()):
        for name, version in sorted(produces.items()):
            for consumer, (_, accepts) in sorted(deployed.items()):
                if name in accepts and version not in accepts[name]:
                    found.append(
                        f"{producer} produces {name} v{version}, which the deployed {consumer} "
                        f"does not accept (it accepts v{', v'.join(map(str, accepts[name]))})"
                    )
    return found
