"""The evidence store: manifests, hash chain, signed checkpoints, spool, ledger, object store,
index DB and verification (`verify_core`, standard library only, also shipped in export packages).

Second floor of the package: it imports only `tonglu.config` (tests/layout/test_layering.py).
"""
