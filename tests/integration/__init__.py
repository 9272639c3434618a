"""Integration tests against the local cloud (moto on loopback plus the local Lambda runtime)."""
