"""RFC 9162 (Certificate Transparency v2) Merkle tree hash, domain-separated.

    leaf = SHA-256(0x00 || entry bytes)      node = SHA-256(0x01 || left || right)

Only the standard library, so the offline verifier shipped in export packages can reuse the same
definition (it carries a copy of this logic).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_leaf_hashes(leaves: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves, iteratively (no recursion depth limit)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    # RFC 9162 splits at the largest power of two < n; folding a stack of perfect subtrees
    # from the left gives the same root.
    stack: list[tuple[int, bytes]] = []  # (subtree size, hash)
    for leaf in leaves:
        size, h = 1, leaf
        while stack and stack[-1][0] == size:
            left_size, left = stack.pop()
            size, h = left_size + size, node_hash(left, h)
        stack.append((size, h))
    _, root = stack.pop()
    while stack:
        _, left = stack.pop()
        root = node_hash(left, root)
    return root


def root(entries: Sequence[bytes]) -> bytes:
    return root_from_leaf_hashes([leaf_hash(e) for e in entries])
