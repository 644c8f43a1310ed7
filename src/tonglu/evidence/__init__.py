"""The evidence store: manifests, hash chain, signed checkpoints, spool, object store, verification.

`storage` depends on no other Tonglu package.
"""
