"""Benchmarks, load generators and simulators: the top floor of the package.

Nothing below imports from here. The `tonglu bench ...` commands are attached to the command line
through the `tonglu.cli` entry-point group (see `bench/commands.py` and `pyproject.toml`), so the
command line itself never imports a benchmark.
"""
