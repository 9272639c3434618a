"""Build each service's Lambda bundle and deploy one stack, to AWS or to a local cloud."""
