"""Tonglu (同录): evidence-grade recording for interview rooms and remote hearings.

Floors, each importing only those below it (tests/layout/test_layering.py)::

    config  <-  evidence  <-  recorder | transcribe | integrity  <-  web  <-  app, cli, commands  <-  bench
"""
