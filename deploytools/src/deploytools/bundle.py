"""Build a service's Lambda deployment package: that service, the workspace packages it declares
(`contracts`, `servicekit`) and its own locked dependencies, nothing else.

Both lists come from the workspace lock (`uv export --package`), so a bundle holds exactly what
the service declares, at the locked versions: a service that imports a workspace package it does
not declare fails in its container, as it would on AWS. What the Lambda Python runtime
already provides (boto3 and its dependencies) is left out, as on AWS; locally those come from a
separate "runtime" directory that plays the part of the Lambda runtime's own libraries.
Zips are deterministic (sorted entries, fixed timestamps), so an unchanged service gives the
same CodeSha256 and a redeploy of it changes nothing.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from deploytools.stacks import ROOT, SERVICES

BUILD = ROOT / "build"
# Provided by the AWS Lambda Python runtime: not bundled.
RUNTIME_PROVIDED = {
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "six",
    "urllib3",
}
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Bundle:
    """A built deployment package."""

    service: str
    zip_path: Path
    directory: Path
    sha256: str


def _uv(*args: str) -> str:
    uv = shutil.which("uv")
    command = [uv, *args] if uv else [sys.executable, "-m", "uv", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"uv {args[0]} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


@functools.cache
def _export(package: str | None) -> tuple[str, ...]:
    args = ["export", "--frozen", "--no-hashes", "--no-header", "--no-annotate"]
    if package:
        args += ["--package", package, "--no-dev"]
    else:
        args += ["--all-packages", "--all-groups"]  # boto3 is a dev dependency of the workspace
    return tuple(ln.strip() for ln in _uv(*args).splitlines() if ln.strip())


def _name(req: str) -> str:
    return req.split("==")[0].split(";")[0].strip().lower()


def _requirements(package: str | None, keep: set[str] | None = None) -> list[str]:
    reqs = [ln for ln in _export(package) if not ln.startswith(("#", "-e", "."))]
    if keep is not None:
        return [r for r in reqs if _name(r) in keep]
    return [r for r in reqs if _name(r) not in RUNTIME_PROVIDED]


def _workspace_members(package: str) -> list[Path]:
    """The workspace packages `package` depends on (itself included), as the lock says."""
    return [ROOT / ln[len("-e ") :].strip() for ln in _export(package) if ln.startswith("-e ")]


def _sources(package: str) -> list[tuple[Path, str]]:
    """(file, name in the zip) for the modules of every workspace member in the bundle."""
    out = []
    for member in _workspace_members(package):
        meta = tomllib.loads((member / "pyproject.toml").read_text())
        module = meta["tool"]["uv"]["build-backend"]["module-name"]
        src = member / "src"
        for path in sorted((src / module).rglob("*.py")):
            out.append((path, path.relative_to(src).as_posix()))
    return out


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def _install(requirements: list[str], target: Path, *, for_aws: bool) -> None:
    req_file = target.with_suffix(".requirements.txt")
    req_file.write_text("\n".join(requirements) + "\n")
    args = ["pip", "install", "--quiet", "--target", str(target), "-r", str(req_file), "--no-deps"]
    if for_aws:
        args += [
            "--python-platform",
            "x86_64-manylinux_2_28",
            "--python-version",
            "3.12",
            "--only-binary",
            ":all:",
        ]
    else:
        args += ["--python", sys.executable]
    _uv(*args)


def _zip(directory: Path, zip_path: Path) -> None:
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            if "__pycache__" in path.parts:
                continue
            info = zipfile.ZipInfo(path.relative_to(directory).as_posix(), _FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())


def build(service: str, *, for_aws: bool = False) -> Bundle:
    """Build (or reuse) the deployment package of one service."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
    requirements = _requirements(f"gro-{service}")
    sources = _sources(f"gro-{service}")
    flavour = "aws" if for_aws else f"local-py{sys.version_info.major}{sys.version_info.minor}"
    digest = _digest(
        [flavour.encode(), "\n".join(requirements).encode()]
        + [name.encode() + b"\0" + path.read_bytes() for path, name in sources]
    )
    directory = BUILD / "bundles" / f"{service}-{flavour}-{digest[:16]}"
    zip_path = directory.with_suffix(".zip")
    if not zip_path.exists():
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _install(requirements, tmp, for_aws=for_aws)
        for path, name in sources:
            dest = tmp / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)
        _zip(directory, zip_path.with_suffix(".zip.tmp"))
        zip_path.with_suffix(".zip.tmp").rename(zip_path)
    sha = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    return Bundle(service=service, zip_path=zip_path, directory=directory, sha256=sha)


def runtime_libraries() -> Path:
    """A directory standing in for the Lambda Python runtime's own libraries (boto3 & co)."""
    requirements = _requirements(None, keep=RUNTIME_PROVIDED)
    digest = _digest([sys.version.encode(), "\n".join(requirements).encode()])
    directory = BUILD / "lambda-runtime" / digest[:16]
    if not directory.exists():
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _install(requirements, tmp, for_aws=False)
        tmp.rename(directory)
    return directory
