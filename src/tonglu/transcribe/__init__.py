"""Smart transcript (智能笔录): live and final ASR drafts of every session, with faster-whisper.

Flow::

    recorder ──segment entries──▶ ledger/<sid>/entries.log
                                      │ tailed by
                                      ▼
    dispatcher (thread in `tonglu up`) ──▶ queue.db (SQLite, leases) ◀── worker processes (1 CPU thread each)
        │ publishes versions                                              decode Opus (PyAV) → VAD →
        ▼                                                                 Whisper → guards → wall clock
    spool (EVIDENCE bucket, sessions/<sid>/transcripts/NNNN.json) + `transcript` manifest entry

Modules: `models` (provisioning, no download), `audio` (decode, timeline), `engine` (Whisper adapter),
`guards` (hallucination guards, t2s), `lines` (wall-clock lines), `speakers` (source → role),
`live` (where a live window is cut), `queue` (durable jobs + leases), `worker` (process main),
`dispatcher` (ledger tailer, publisher), `versions` (numbered, never-overwritten versions),
`documents` (version JSON, corrections, diffs), `exports` (VTT, SRT, DOCX), `service`
(`TranscriptService` for the web), `workers` (`start_workers(settings) -> WorkersHandle`),
and in `tonglu.bench`: `simulate` (sessions for tests and benchmarks), `evaluation` (WER/CER, corpus), `transcribe`.

Versions of a session: the live draft (while recording: version 0, not stored, from the queue), then
at stop the live draft is stored as version N ("live") and the final pass over the whole session as
N+1 ("final"); a person's corrections are further versions ("correction"), `draft` false only once a
person marks one verified. `tonglu transcribe SESSION` stores a re-run ("rerun").
"""
