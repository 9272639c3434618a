"""A service's Lambda bundle holds that service, the workspace packages it declares and its own
locked dependencies: nothing of another service, of the tooling, or of the Lambda runtime."""

from __future__ import annotations

import zipfile

import pytest

from deploytools import bundle
from deploytools.stacks import SERVICES

OTHERS = {"contracts", "servicekit", "deploytools", "localcloud", "ingest_cli", *SERVICES}


@pytest.mark.parametrize("service", SERVICES)
def test_a_bundle_holds_its_service_and_what_it_declares_and_nothing_of_the_rest(
    service: str,
) -> None:
    built = bundle.build(service)
    with zipfile.ZipFile(built.zip_path) as zf:
        top = {name.split("/")[0] for name in zf.namelist()}
    ours = top & OTHERS
    assert ours == {service, "contracts", "servicekit"}
    assert "handler.py" in {p.name for p in (built.directory / service).iterdir()}
    # the Lambda runtime provides these; bundling them would shadow its own
    assert top & {"boto3", "botocore"} == set()
    assert "aws_lambda_powertools" in top and "msgspec" in top


def test_the_same_sources_build_the_same_bundle() -> None:
    first = bundle.build("reaper")
    again = bundle.build("reaper")
    assert (first.sha256, first.zip_path) == (again.sha256, again.zip_path)
