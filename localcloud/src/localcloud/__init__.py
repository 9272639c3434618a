"""Local simulation of the cloud services the pipeline talks to (loopback only)."""
