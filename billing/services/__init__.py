"""Writes for billing, one module per entity."""
