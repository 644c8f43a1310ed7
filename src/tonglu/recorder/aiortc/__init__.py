"""Every use of a private name of aiortc, aioice, pylibsrtp or asyncio lives in this package.

- `seam`: pass-through of encoded frames (aiortc's receiver `decoder_worker`, RTP/RTCP handlers,
  PLI/NACK senders, the receiver's name-mangled queues);
- `fastpath`: the synchronous SRTP receive path (aioice's connection and protocols, the DTLS
  transport's SRTP session and RTP router, asyncio's datagram transport, libsrtp's binding);
- `internals`: the small rest (ICE sockets of a peer, the receiver of a track, a sender's keyframe
  hook and codecs, what the benchmark's lean sender needs).

The versions are pinned in pyproject.toml and `tests/recorder/test_seam_contract.py` names every
private attribute used here and checks it on the pinned versions; a test fails if code outside
this package touches one of them.
"""
