"""The evidence model: canonical bytes, hash chain, Merkle roots, signed checkpoints."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tonglu.evidence import canonical, merkle
from tonglu.evidence.checkpoint import Checkpoint, human_digest, sign_checkpoint
from tonglu.evidence.errors import CanonicalError, ManifestError
from tonglu.evidence.manifest import GENESIS, GapRecord, HashChain, ManifestEntry, SegmentRecord
from tonglu.evidence.signing import SiteKey, load_public_pem, verify_signature


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, written recursively exactly as the RFC states it."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_merkle_root_matches_rfc9162_definition(leaves: list[bytes]) -> None:
    assert merkle.root(leaves) == _mth(leaves)


def test_merkle_known_vectors() -> None:
    # Empty tree and one-leaf tree from the RFC's definitions.
    assert merkle.root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert merkle.root([b""]).hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**62), 2**62) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_canonical_roundtrip_is_stable(value: object) -> None:
    data = canonical.encode(value)
    assert canonical.encode(canonical.decode(data)) == data


def test_canonical_rejects_floats_and_non_canonical_bytes() -> None:
    with pytest.raises(CanonicalError):
        canonical.encode({"t": 1.5})
    with pytest.raises(CanonicalError):
        canonical.decode(b'{"b":1, "a":2}')
    with pytest.raises(CanonicalError):
        canonical.decode(b'{"b":1,"a":2}')  # keys out of order
    assert canonical.decode(b'{"a":2,"b":1}') == {"a": 2, "b": 1}
    for bad in (b'{"t":1.5}', b'{"t":1e3}', b'{"t":NaN}', b'{"t":-Infinity}', b'{"t":9223372036854775808}',
                b'{"t":-9223372036854775808}', b'[1.0]'):  # fmt: skip
        with pytest.raises(CanonicalError):
            canonical.decode(bad)
    assert canonical.decode(b'{"t":9223372036854775807}') == {"t": 2**63 - 1}


def _segment(index: int) -> SegmentRecord:
    return SegmentRecord(
        source="main", track="video", media="video", codec="vp8", container="webm", index=index,
        key=f"sessions/s1/segments/main/video/{index:08d}.webm", rtp_first=index * 360000,
        rtp_last=index * 360000 + 357000, clock_rate=90000, wall_first_ns=10**18 + index * 4 * 10**9,
        wall_last_ns=10**18 + (index + 1) * 4 * 10**9, frames=120, bytes=1000, sha256="ab" * 32,
    )


def test_chain_links_each_entry_to_the_previous_one() -> None:
    chain = HashChain("s1")
    entries = [chain.append("segment", _segment(i).to_body(), now_ns=i) for i in range(4)]
    assert entries[0].prev == GENESIS
    for before, after in itertools.pairwise(entries):
        assert after.prev == before.entry_hash
        assert after.seq == before.seq + 1
    assert ManifestEntry.from_bytes(entries[2].to_bytes()) == entries[2]
    assert SegmentRecord.from_body(entries[1].body) == _segment(1)


def test_edited_entry_bytes_are_refused() -> None:
    entry = HashChain("s1").append("note", {"text": "休息"}, now_ns=1)
    edited = entry.to_bytes().replace(b'"note"', b'"marker"')
    # Still canonical JSON, but its hash differs: the chain (not parsing) catches it.
    assert ManifestEntry.from_bytes(edited).entry_hash != entry.entry_hash
    with pytest.raises(ManifestError):
        ManifestEntry.from_bytes(entry.to_bytes() + b" ")
    with pytest.raises(ManifestError):
        ManifestEntry.from_bytes(b'{"kind":"bogus"}')


def test_gap_record_validates_reason_and_bounds() -> None:
    GapRecord("main", "audio", "rtp_loss", 10, 20)
    with pytest.raises(ManifestError):
        GapRecord("main", "audio", "because", 10, 20)
    with pytest.raises(ManifestError):
        GapRecord("main", "audio", "rtp_loss", 20, 10)


def test_checkpoint_signature_roundtrip_and_tamper(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = SiteKey.load_or_create(tmp_path)
    assert SiteKey.load_or_create(tmp_path).key_id == key.key_id  # not regenerated
    cp = sign_checkpoint(key, session="s1", tree_size=3, root=b"\x01" * 32, head="cd" * 32, now_ns=5)
    parsed = Checkpoint.from_bytes(cp.to_bytes())
    public = load_public_pem(key.public_pem)
    assert verify_signature(public, parsed.signature, parsed.body_bytes())
    forged = Checkpoint(**{**parsed.__dict__, "tree_size": 2})
    assert not verify_signature(public, forged.signature, forged.body_bytes())
    assert len(cp.digest) == 23 and cp.digest == human_digest(cp.body_bytes())
