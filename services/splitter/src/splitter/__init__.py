"""The splitter service."""

# The released version of this service (pyproject.toml says the same; a test holds them equal).
__version__ = "0.1.0"
