"""A file reference as the S3 API names an object version."""

from __future__ import annotations

from contracts.messages import FileRef


def object_version(file: FileRef) -> dict[str, str]:
    """`Bucket`, `Key` and (when known) `VersionId`, for get, head, copy and delete calls."""
    args = {"Bucket": file.bucket, "Key": file.key}
    if file.version_id:
        args["VersionId"] = file.version_id
    return args
