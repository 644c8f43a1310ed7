"""Command modules of the `tonglu` CLI, one per area."""
