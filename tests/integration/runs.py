"""Driving one file through a running LocalCloud, and reading what a file holds of a person:
shared by the scenario tests so each says only what it checks."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from ingest_cli.follow import Summary, follow, upload
from localcloud.cloud import LocalCloud

# What the sample generator writes that is a person's (the GRO reference's personal fields).
PERSONAL_ELEMENTS = frozenset(
    {
        "PersonGivenName",
        "PersonFamilyName",
        "PersonBirthDate",
        "PersonDeathDate",
        "Line",
        "Postcode",
    }
)


def ingest(cloud: LocalCloud, path: Path, timeout: float = 240) -> Summary:
    """Upload PATH and follow it until every record is terminal and the platform is idle."""
    platform, pollers = cloud.platform, cloud.pollers
    assert platform is not None and pollers is not None
    return follow(
        cloud.client,
        upload(cloud.client, path),
        platform_stats=platform.stats,
        timeout=timeout,
        progress=lambda _: None,
        settled=lambda: platform.wait_idle(0) and pollers.idle(),
    )


def personal_values(path: Path, elements: frozenset[str] = PERSONAL_ELEMENTS) -> set[str]:
    """Every value longer than 3 characters of those elements in the file."""
    tree = etree.parse(str(path))
    return {
        e.text.strip()
        for e in tree.iter()
        if isinstance(e.tag, str)
        and etree.QName(e).localname in elements
        and e.text
        and len(e.text.strip()) > 3
    }
