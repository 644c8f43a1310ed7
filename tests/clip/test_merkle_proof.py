"""RFC 9162 inclusion proofs: every leaf of trees of every size up to 70 proves against the root that
`root_from_leaf_hashes` gives; any changed path hash, index, size or leaf fails."""

from __future__ import annotations

import hashlib

from tonglu.evidence import merkle, verify_core


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(f"entry {i}".encode()) for i in range(n)]


def _path_rfc(leaves: list[bytes], m: int) -> list[bytes]:
    """PATH(m, D[n]) exactly as RFC 9162 §2.1.3.1 writes it (recursive)."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*_path_rfc(leaves[:k], m), merkle.root_from_leaf_hashes(leaves[k:])]
    return [*_path_rfc(leaves[k:], m - k), merkle.root_from_leaf_hashes(leaves[:k])]


def test_every_leaf_of_every_size_proves_and_matches_the_rfc_recursion() -> None:
    for n in range(1, 71):
        leaves = _leaves(n)
        tree = merkle.MerkleTree(leaves)
        root = merkle.root_from_leaf_hashes(leaves)
        assert tree.root == root
        for m in range(n):
            path = tree.inclusion_proof(m)
            assert path == _path_rfc(leaves, m), (n, m)
            assert merkle.verify_inclusion(leaves[m], m, n, path, root)
            assert verify_core.merkle_verify_inclusion(leaves[m], m, n, path, root)


def test_any_change_fails() -> None:
    n = 37
    leaves = _leaves(n)
    tree = merkle.MerkleTree(leaves)
    root = tree.root
    for m in (0, 17, 32, 36):
        path = tree.inclusion_proof(m)
        for i in range(len(path)):
            bad = list(path)
            bad[i] = hashlib.sha256(bad[i]).digest()
            assert not merkle.verify_inclusion(leaves[m], m, n, bad, root)
            assert not verify_core.merkle_verify_inclusion(leaves[m], m, n, bad, root)
        assert not verify_core.merkle_verify_inclusion(leaves[m], (m + 1) % n, n, path, root)
        if m == n - 1:  # the last leaf's path depends on the size (for leaf 0 of 37 or 38 it does not)
            assert not verify_core.merkle_verify_inclusion(leaves[m], m, n + 1, path, root)
            assert not verify_core.merkle_verify_inclusion(leaves[m], m, n - 1, path, root)
        assert not verify_core.merkle_verify_inclusion(leaves[(m + 1) % n], m, n, path, root)
        assert not verify_core.merkle_verify_inclusion(leaves[m], m, n, path[:-1], root)
        assert not verify_core.merkle_verify_inclusion(leaves[m], m, n, [*path, root], root)
