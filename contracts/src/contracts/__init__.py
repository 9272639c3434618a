"""Contracts shared by the GRO ingestion services: records, events and queue messages."""
