"""verify_core re-implements the evidence model with the standard library: prove it byte-compatible."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tonglu.evidence import canonical, merkle, verify_core
from tonglu.evidence.checkpoint import human_digest, sign_checkpoint
from tonglu.evidence.errors import CanonicalError
from tonglu.evidence.manifest import GENESIS, HashChain
from tonglu.evidence.signing import SiteKey, key_id_of

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63) + 1, 2**63 - 1) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)


@given(json_values)
def test_canonical_bytes_are_identical(value: object) -> None:
    data = canonical.encode(value)
    assert verify_core.canonical_encode(value) == data
    assert verify_core.canonical_decode(data) == canonical.decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1.5}',
        b'{"b":1,"a":2}',
        b'{"a": 1}',
        b'{"a":NaN}',
        b'{"a":1,"a":1}',
        b"\xff",
        b'{"a":9223372036854775808}',
        b'{"a":"\\u00e9"}',
        b'{"a":1}\n',
        b"[1e3]",
    ],
)
def test_canonical_rejections_agree(data: bytes) -> None:
    with pytest.raises(CanonicalError):
        canonical.decode(data)
    with pytest.raises(verify_core.NotCanonical):
        verify_core.canonical_decode(data)


@given(st.lists(st.binary(max_size=16), max_size=80))
def test_merkle_root_is_identical(leaves: list[bytes]) -> None:
    assert verify_core.merkle_root(leaves) == merkle.root(leaves)


def test_entry_hash_checkpoint_digest_and_key_id_agree() -> None:
    key = SiteKey(Ed25519PrivateKey.generate())
    chain = HashChain("S1")
    entries = [chain.append("note", {"text": f"第{i}条", "n": i}, 10**18 + i) for i in range(7)]
    for e in entries:
        assert verify_core.sha256_hex(e.to_bytes()) == e.entry_hash
    cp = sign_checkpoint(
        key,
        session="S1",
        tree_size=7,
        root=merkle.root([e.to_bytes() for e in entries]),
        head=entries[-1].entry_hash,
        now_ns=1,
        prev_checkpoint=GENESIS,
        final=True,
    )
    assert verify_core.human_digest(cp.body_bytes()) == human_digest(cp.body_bytes()) == cp.digest
    raw = verify_core.raw_public_key_from_pem(key.public_pem, strict=True)
    assert verify_core.key_id_of_raw(raw) == key_id_of(key.public) == key.key_id
    assert verify_core.public_key_pem(raw) == key.public_pem
    parsed = verify_core._parse_checkpoint("x", 0, cp.to_bytes())
    assert parsed.error is None and parsed.body_bytes == cp.body_bytes() and parsed.signature == cp.signature


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 63), st.integers(1, 255))
def test_pure_python_ed25519_agrees_with_cryptography(message: bytes, pos: int, xor: int) -> None:
    key = Ed25519PrivateKey.generate()
    site = SiteKey(key)
    raw = verify_core.raw_public_key_from_pem(site.public_pem)
    sig = key.sign(message)
    assert verify_core.ed25519_verify_pure(raw, sig, message)
    bad = bytearray(sig)
    bad[pos] ^= xor
    assert not verify_core.ed25519_verify_pure(raw, bytes(bad), message)
    assert not verify_core.ed25519_verify_pure(raw, sig, message + b"x")
    other = verify_core.raw_public_key_from_pem(SiteKey(Ed25519PrivateKey.generate()).public_pem)
    assert not verify_core.ed25519_verify_pure(other, sig, message)


def test_pure_python_ed25519_rfc8032_vectors() -> None:
    # RFC 8032 §7.1 TEST 1 and TEST 3.
    vectors = [
        (
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
    ]
    for pub, msg, sig in vectors:
        assert verify_core.ed25519_verify_pure(bytes.fromhex(pub), bytes.fromhex(sig), bytes.fromhex(msg))
        assert not verify_core.ed25519_verify_pure(bytes.fromhex(pub), bytes.fromhex(sig), b"other")
    # S >= L (malleated signature) is refused by both.
    key = Ed25519PrivateKey.generate()
    raw = verify_core.raw_public_key_from_pem(SiteKey(key).public_pem)
    good = key.sign(b"m")
    s = int.from_bytes(good[32:], "little") + 2**252 + 27742317777372353535851937790883648493
    malleated = good[:32] + s.to_bytes(32, "little")
    assert not verify_core.ed25519_verify_pure(raw, malleated, b"m")
    assert not verify_core.ed25519_verify(raw, malleated, b"m")


def test_strict_pem_refuses_edits_that_decode_to_the_same_key() -> None:
    pem = SiteKey(Ed25519PrivateKey.generate()).public_pem
    assert verify_core.raw_public_key_from_pem(pem.replace(b"\n", b"\r\n"))  # lenient: a --key file
    with pytest.raises(ValueError):
        verify_core.raw_public_key_from_pem(pem.replace(b"\n", b"\r\n"), strict=True)


def test_digest_streams_large_files(tmp_path: Path) -> None:
    data = os.urandom(3 * verify_core.CHUNK + 17)
    (tmp_path / "f").write_bytes(data)
    d = verify_core.DirSource(str(tmp_path)).digest("f")
    assert (d.sha256, d.size, d.error) == (hashlib.sha256(data).hexdigest(), len(data), None)


@given(st.lists(st.binary(max_size=8), max_size=70), st.data())
def test_merkle_roots_at_every_prefix(leaves: list[bytes], data: st.DataObject) -> None:
    sizes = data.draw(st.sets(st.integers(0, len(leaves))))
    roots = verify_core.merkle_roots_at(leaves, sizes)
    assert roots == {n: merkle.root(leaves[:n]) for n in sizes}
