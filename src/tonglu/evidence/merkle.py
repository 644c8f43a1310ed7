"""RFC 9162 (Certificate Transparency v2) Merkle tree hash, domain-separated.

    leaf = SHA-256(0x00 || entry bytes)      node = SHA-256(0x01 || left || right)

Only the standard library, so the offline verifier shipped in export packages can reuse the same
definition (it carries a copy of this logic).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from tonglu.evidence import verify_core

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


class MerkleTree:
    """All levels of the RFC 9162 tree over `leaves` (already leaf-hashed): the root and inclusion
    proofs (audit paths, RFC 9162 §2.1.3.1) of any leaf, each in O(log n) after O(n) node hashes.

    Every node of an RFC 9162 tree covers an aligned range [i·2^j, min((i+1)·2^j, n)); a node at the
    ragged right edge without a sibling is the same range one level up, so it is carried up as is.
    """

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.size = len(leaves)
        self.levels: list[list[bytes]] = [list(leaves)]
        level = self.levels[0]
        while len(level) > 1:
            up = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                up.append(level[-1])
            self.levels.append(up)
            level = up

    @property
    def root(self) -> bytes:
        return self.levels[-1][0] if self.size else EMPTY_ROOT

    def inclusion_proof(self, index: int) -> list[bytes]:
        """The audit path of leaf `index`, bottom-up (the order RFC 9162 §2.1.3.2 consumes it)."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} is not in a tree of size {self.size}")
        path = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index >>= 1
        return path


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does the audit path lead from leaf hash `leaf` at `index` to `root`?
    (One implementation, the offline verifier's, which travels alone in export packages and clips.)"""
    return verify_core.merkle_verify_inclusion(leaf, index, size, list(path), root)
