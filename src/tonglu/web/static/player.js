// 同录 Tonglu — playback from the master segments, no re-encoding (Media Source Extensions).
//
// The server's playlist (GET /api/sessions/<sid>/playback, built from the signed manifest) lists per
// source and track the segments with their wall times (ms from the session start), the gaps, markers
// and breaks. A 24 h session lists 172,800 segments, so the player loads the head with the first
// window only (?from_ms=0&to_ms=WINDOW_MS: gaps, markers and breaks of the whole session, segments of
// that window) and then the windows around the playhead (GET .../playback/window), as it plays or
// seeks; until the window under the playhead is in, the clock waits (nothing is shown as a gap
// because it is not loaded yet). Every track gets its own <video>/<audio> on its own MediaSource; whole segments are
// appended, each with timestampOffset = its wall start, so media time == session time on every
// element and a gap stays a gap. One clock (ours) drives all elements; an element is re-synced when
// it drifts more than 0.3 s. Where a track has no media the tile shows a gap card; a segment the
// server refuses (409: it does not match its manifest entry) shows an integrity error card and is
// never appended. Plain ES2020, no build step.
"use strict";

(function () {
  const SYNC_MS = 300;
  const AHEAD_MS = 8000;  // fetch segments this far ahead of the clock
  const KEEP_BEHIND_S = 60;  // drop buffered media further behind than this
  const TICK_MS = 100;
  const WINDOW_MS = 10 * 60 * 1000;  // playlist windows fetched around the playhead
  const RETRY_MS = 3000;  // a window that failed to load is asked for again after this

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmtOffset(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const p = (n) => String(n).padStart(2, "0");
    return `${p(Math.floor(s / 3600))}:${p(Math.floor((s % 3600) / 60))}:${p(s % 60)}`;
  }
  function beijing(ms) {
    return new Date(ms).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });
  }
  const GAP_REASON = {
    no_media: "无录像 no media", peer_disconnect: "信号断开 disconnected", not_connected: "未连接 not connected",
    packet_loss: "丢包 packet loss", recorder_restart: "录制重启 recorder restart",
  };

  // One track of one source on its own media element and MediaSource.
  class Lane {
    constructor(player, track, media) {
      this.player = player;
      this.track = track;
      this.media = media;
      // [seq, start_ms, end_ms] rows of the playlist, as objects
      this.segs = [];
      this.known = new Set();
      this.addRows(track.segments);
      this.appended = new Set();
      this.failed = new Map();  // seq -> error text
      this.queue = Promise.resolve();
      this.pending = new Set();
      this.sb = null;
      this.ready = new Promise((resolve, reject) => {
        if (!window.MediaSource || !MediaSource.isTypeSupported(track.mime)) {
          reject(new Error(`浏览器不支持 ${track.mime} (MSE)`));
          return;
        }
        const ms = new MediaSource();
        this.ms = ms;
        media.src = URL.createObjectURL(ms);
        ms.addEventListener("sourceopen", () => {
          this.sb = ms.addSourceBuffer(track.mime);
          this.sb.mode = "segments";
          try { ms.duration = Math.max(1, player.plan.duration_ms / 1000); } catch (_e) { /* closed */ }
          resolve();
        }, { once: true });
      });
      this.ready.catch((e) => { this.unsupported = e.message; });
    }

    // rows of a playlist window: [seq, start_ms, end_ms] (a segment across a window edge comes twice)
    addRows(rows) {
      let added = false;
      for (const [seq, a, b] of rows) {
        if (this.known.has(seq)) continue;
        this.known.add(seq);
        this.segs.push({ seq, start_ms: a, end_ms: b, url: this.track.url_pattern.replace("{seq}", seq) });
        added = true;
      }
      if (added) this.segs.sort((x, y) => x.start_ms - y.start_ms || x.seq - y.seq);
    }

    // the segment covering session time `ms`, or null (a gap); segments are sorted by start
    at(ms) {
      let lo = 0, hi = this.segs.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1, s = this.segs[mid];
        if (ms < s.start_ms) hi = mid - 1;
        else if (ms >= s.end_ms) lo = mid + 1;
        else return s;
      }
      return null;
    }

    gapAt(ms) {
      return this.track.gaps.find((g) => ms >= g.start_ms && ms < g.end_ms) || null;
    }

    want(ms) {
      let lo = 0, hi = this.segs.length;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (this.segs[mid].end_ms <= ms) lo = mid + 1; else hi = mid; }
      const out = [];
      for (let i = lo; i < this.segs.length && this.segs[i].start_ms <= ms + AHEAD_MS; i++) out.push(this.segs[i]);
      return out;
    }

    load(seg) {
      if (this.appended.has(seg.seq) || this.pending.has(seg.seq) || this.failed.has(seg.seq)) return;
      this.pending.add(seg.seq);
      const fetched = fetch(seg.url, { credentials: "same-origin" }).then(async (r) => {
        if (r.status === 409) {
          const body = await r.json().catch(() => ({}));
          throw Object.assign(new Error(body.detail || "完整性校验失败"), { integrity: true });
        }
        if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
        return r.arrayBuffer();
      });
      this.queue = this.queue.then(() => this.ready).then(() => fetched).then((buf) => this.append(seg, buf))
        .catch((e) => {
          this.failed.set(seg.seq, e.message);
          if (e.integrity) this.player.integrityError(this, seg, e.message);
          else this.player.note(`${this.track.source}/${this.track.track} #${seg.seq}: ${e.message}`);
        })
        .finally(() => { this.pending.delete(seg.seq); });
    }

    append(seg, buf) {
      return new Promise((resolve, reject) => {
        const sb = this.sb;
        const done = () => { sb.removeEventListener("updateend", done); sb.removeEventListener("error", fail); resolve(); };
        const fail = () => { sb.removeEventListener("updateend", done); sb.removeEventListener("error", fail); reject(new Error("append failed")); };
        sb.addEventListener("updateend", done);
        sb.addEventListener("error", fail);
        try {
          sb.timestampOffset = seg.start_ms / 1000;
          sb.appendBuffer(buf);
          this.appended.add(seg.seq);
        } catch (e) {
          sb.removeEventListener("updateend", done); sb.removeEventListener("error", fail);
          if (e.name === "QuotaExceededError") { this.evict(0); }
          reject(e);
        }
      });
    }

    evict(posMs) {
      const sb = this.sb;
      if (!sb || sb.updating) return;
      const cut = posMs / 1000 - KEEP_BEHIND_S;
      if (cut <= 0 || !sb.buffered.length || sb.buffered.start(0) >= cut) return;
      this.queue = this.queue.then(() => new Promise((resolve) => {
        sb.addEventListener("updateend", () => resolve(), { once: true });
        try { sb.remove(0, cut); } catch (_e) { resolve(); }
      })).then(() => {
        for (const s of this.segs) if (s.end_ms / 1000 <= cut) this.appended.delete(s.seq);
      });
    }

    buffered(ms) {
      const t = ms / 1000, b = this.sb ? this.sb.buffered : null;
      if (!b) return false;
      for (let i = 0; i < b.length; i++) if (t >= b.start(i) - 0.05 && t < b.end(i)) return true;
      return false;
    }
  }

  class Player {
    constructor(root, sid, opts) {
      this.root = root;
      this.sid = sid;
      this.opts = opts || {};
      this.pos = 0;
      this.playing = false;
      this.lanes = [];
      this.tiles = {};
      this.notes = [];
      this.firstFrameAt = null;
      this.errors = [];
      this.listeners = [];
      this.windows = new Map();  // window number -> "loading" | "ready" | retry-at time (failed)
    }

    async load() {
      const r = await fetch(`/api/sessions/${this.sid}/playback?from_ms=0&to_ms=${WINDOW_MS}`, { credentials: "same-origin" });
      if (!r.ok) throw new Error(`${r.status} ${(await r.json().catch(() => ({}))).detail || ""}`);
      this.plan = await r.json();
      this.windows.set(0, "ready");
      this.t0 = Number(BigInt(this.plan.t0_ns) / 1000000n);
      this.build();
      return this.plan;
    }

    windowOf(ms) { return Math.floor(Math.max(0, ms) / WINDOW_MS); }

    windowReady(ms) { return this.windows.get(this.windowOf(ms)) === "ready"; }

    // fetch the windows under the playhead and just ahead of it (each once; a failed one again later)
    ensureWindows(ms) {
      for (const k of new Set([this.windowOf(ms), this.windowOf(ms + AHEAD_MS)])) {
        if (k * WINDOW_MS > this.plan.duration_ms) continue;
        const state = this.windows.get(k);
        if (state === "ready" || state === "loading" || (typeof state === "number" && performance.now() < state)) continue;
        this.fetchWindow(k);
      }
    }

    async fetchWindow(k) {
      this.windows.set(k, "loading");
      try {
        const r = await fetch(`/api/sessions/${this.sid}/playback/window?from_ms=${k * WINDOW_MS}&to_ms=${(k + 1) * WINDOW_MS}`,
          { credentials: "same-origin" });
        if (!r.ok) throw new Error(`${r.status} ${(await r.json().catch(() => ({}))).detail || ""}`);
        const doc = await r.json();
        for (const t of doc.tracks) {
          const lane = this.lanes.find((l) => l.track.source === t.source && l.track.track === t.track);
          if (lane) lane.addRows(t.segments);
        }
        this.windows.set(k, "ready");
      } catch (e) {
        this.windows.set(k, performance.now() + RETRY_MS);
        this.note(`回放清单 playlist window ${k}: ${e.message}`);
      }
    }

    build() {
      const grid = el("div", "pb-grid");
      for (const source of this.plan.sources) {
        const tracks = this.plan.tracks.filter((t) => t.source === source);
        const tile = el("div", "pb-tile");
        tile.dataset.source = source;
        const screen = el("div", "pb-screen");
        const label = el("div", "pb-label", source);
        const gapCard = el("div", "pb-card gap");
        gapCard.hidden = true;
        const errCard = el("div", "pb-card error");
        errCard.hidden = true;
        screen.append(label, gapCard, errCard);
        let hasVideo = false;
        for (const t of tracks) {
          if (!(t.segments_total ?? t.segments.length)) continue;
          const media = document.createElement(t.media === "video" ? "video" : "audio");
          media.muted = t.media === "video";
          media.playsInline = true;
          media.preload = "auto";
          media.dataset.track = `${t.source}/${t.track}`;
          if (t.media === "video") { screen.append(media); hasVideo = true; } else tile.append(media);
          const lane = new Lane(this, t, media);
          lane.tile = tile;
          lane.gapCard = gapCard;
          lane.errCard = errCard;
          this.lanes.push(lane);
          if (t.media === "video" && "requestVideoFrameCallback" in media) {
            const onFrame = () => { if (this.firstFrameAt === null) this.firstFrameAt = performance.now(); };
            media.requestVideoFrameCallback(onFrame);
          }
        }
        if (!hasVideo) screen.append(el("div", "pb-audio-only", "仅音频 audio only"));
        tile.append(screen);
        grid.append(tile);
        this.tiles[source] = { tile, gapCard, errCard, screen };
      }
      const bar = el("div", "pb-controls");
      this.playBtn = el("button", "", "▶ 播放 Play");
      this.playBtn.type = "button";
      this.playBtn.addEventListener("click", () => (this.playing ? this.pause() : this.play()));
      this.clock = el("span", "pb-clock", "");
      bar.append(this.playBtn, this.clock);
      this.timeline = el("div", "timeline pb-timeline");
      this.timeline.id = "timeline";
      this.timeline.title = "时间轴 timeline: 点击跳转 click to seek";
      this.cursor = el("div", "tl-cursor");
      this.timeline.addEventListener("click", (ev) => {
        const r = this.timeline.getBoundingClientRect();
        this.seek(((ev.clientX - r.left) / r.width) * this.plan.duration_ms);
      });
      this.root.replaceChildren(grid, bar, this.timeline);
      this.drawTimeline([]);
      this.timer = setInterval(() => this.tick(), TICK_MS);
      this.tick();
    }

    pct(ms) { return Math.max(0, Math.min(100, (ms / Math.max(1, this.plan.duration_ms)) * 100)); }

    drawTimeline(lines) {
      const LANE_TOP = 22, LANE_H = 14;
      const items = [this.cursor];
      const sources = this.plan.sources;
      const put = (cls, a, b, title, lane) => {
        const d = el("div", cls);
        d.title = title;
        d.style.left = `${this.pct(a)}%`;
        d.style.width = `${Math.max(0.3, this.pct(b) - this.pct(a))}%`;
        if (lane !== undefined && lane >= 0) { d.style.top = `${LANE_TOP + lane * LANE_H}px`; d.style.height = `${LANE_H - 2}px`; d.style.bottom = "auto"; }
        items.push(d);
      };
      sources.forEach((s, i) => {
        const l = el("div", "tl-lane"); l.style.top = `${LANE_TOP + i * LANE_H}px`; items.push(l);
        const lab = el("div", "tl-lane-label", s); lab.style.top = `${LANE_TOP + i * LANE_H}px`; items.push(lab);
      });
      for (const t of this.plan.tracks) {
        for (const g of t.gaps) put("tl-gap", g.start_ms, g.end_ms, `缺口 ${t.source}/${t.track} ${GAP_REASON[g.reason] || g.reason} ${fmtOffset(g.start_ms)}–${fmtOffset(g.end_ms)}`, sources.indexOf(t.source));
      }
      for (const b of this.plan.breaks) put("tl-break", b.start_ms, b.end_ms, `中断 ${b.reason_code} ${b.text || ""}`);
      for (const m of this.plan.markers) { const d = el("div", "tl-marker"); d.title = `打点 ${m.note}`; d.style.left = `${this.pct(m.at_ms)}%`; items.push(d); }
      const joined = {};
      for (const p of this.plan.participants || []) {
        if (p.event === "joined") joined[p.source] = p;
        else if (joined[p.source]) { put("tl-remote", joined[p.source].at_ms, p.at_ms, `远程 ${p.name}`, sources.indexOf(p.source)); delete joined[p.source]; }
      }
      for (const p of Object.values(joined)) put("tl-remote", p.at_ms, this.plan.duration_ms, `远程 ${p.name}`, sources.indexOf(p.source));
      for (const l of lines) { const d = el("div", "tl-line"); d.title = l.text || ""; d.style.left = `${this.pct(l.start - this.t0)}%`; items.push(d); }
      this.timeline.style.height = `${LANE_TOP + sources.length * LANE_H + 4}px`;
      this.timeline.replaceChildren(...items);
    }

    setTranscript(lines) { if (this.plan) this.drawTimeline(lines); }

    onTime(fn) { this.listeners.push(fn); }

    note(text) { this.notes.push(text); if (this.opts.onNote) this.opts.onNote(text); }

    integrityError(lane, seg, message) {
      this.errors.push({ source: lane.track.source, track: lane.track.track, seq: seg.seq, message });
      const c = lane.errCard;
      c.replaceChildren(el("strong", "", "✘ 完整性校验失败 integrity error"), el("p", "", message),
        el("p", "", `片段 #${seg.seq}（${fmtOffset(seg.start_ms)}–${fmtOffset(seg.end_ms)}）与签名清单不符，拒绝播放。`));
      lane.badSpan = [seg.start_ms, seg.end_ms];
    }

    play() {
      if (this.pos >= this.plan.duration_ms) this.pos = 0;
      this.playing = true;
      this.base = { pos: this.pos, t: performance.now() };
      this.playBtn.textContent = "❚❚ 暂停 Pause";
      for (const l of this.lanes) l.media.play().catch(() => {});
    }

    pause() {
      this.playing = false;
      this.playBtn.textContent = "▶ 播放 Play";
      for (const l of this.lanes) l.media.pause();
    }

    seek(ms) {
      this.pos = Math.max(0, Math.min(this.plan.duration_ms, ms));
      this.base = { pos: this.pos, t: performance.now() };
      for (const l of this.lanes) {
        if (l.at(this.pos) && l.buffered(this.pos)) l.media.currentTime = this.pos / 1000;
      }
      this.tick();
    }

    seekWall(ms) { this.seek(ms - this.t0); }

    tick() {
      const now = performance.now();
      this.ensureWindows(this.pos);
      const listed = this.windowReady(this.pos);
      if (this.playing) {
        // the clock waits for media that should be playing and is still loading (keeps all in sync),
        // and for the playlist window under the playhead
        const waiting = !listed || this.lanes.some((l) => !l.unsupported && l.at(this.pos) && !l.failed.has(l.at(this.pos).seq) && !l.buffered(this.pos));
        if (waiting) this.base = { pos: this.pos, t: now };
        else this.pos = this.base.pos + (now - this.base.t);
        if (this.pos >= this.plan.duration_ms) { this.pos = this.plan.duration_ms; this.pause(); }
      }
      const shown = {};
      for (const l of listed ? this.lanes : []) {
        for (const s of l.want(this.pos)) l.load(s);
        const seg = l.at(this.pos);
        const isVideo = l.track.media === "video";
        const tile = this.tiles[l.track.source];
        if (seg === null) {
          if (!l.media.paused) l.media.pause();
          if (isVideo || !shown[l.track.source]) {
            const g = l.gapAt(this.pos);
            const [a, b] = g ? [g.start_ms, g.end_ms] : [this.pos, this.pos];
            shown[l.track.source] = shown[l.track.source] || (isVideo ? {
              text: `录像中断 ${((b - a) / 1000).toFixed(1)} 秒 gap`,
              detail: `${beijing(this.t0 + a)} – ${beijing(this.t0 + b)} · ${g ? (GAP_REASON[g.reason] || g.reason) : ""}`,
            } : null);
          }
          continue;
        }
        if (l.failed.has(seg.seq)) {
          if (!l.media.paused) l.media.pause();
          if (isVideo) shown[l.track.source] = shown[l.track.source] || { error: true };
          continue;
        }
        if (!l.buffered(this.pos)) continue;
        if (Math.abs(l.media.currentTime * 1000 - this.pos) > SYNC_MS) l.media.currentTime = this.pos / 1000;
        if (this.playing && l.media.paused) l.media.play().catch(() => {});
        if (!this.playing && !l.media.paused) l.media.pause();
        if (l.media.currentTime > 0 && this.firstFrameAt === null && isVideo && !("requestVideoFrameCallback" in l.media)) this.firstFrameAt = now;
        if ((Math.floor(now / 5000) % 2) === 0) l.evict(this.pos);
      }
      for (const [source, t] of Object.entries(this.tiles)) {
        const s = shown[source];
        t.errCard.hidden = !(s && s.error);
        t.gapCard.hidden = !(s && !s.error);
        if (s && !s.error) t.gapCard.replaceChildren(el("strong", "", s.text), el("p", "", s.detail));
        t.tile.classList.toggle("in-gap", !!(s && !s.error));
      }
      this.cursor.style.left = `${this.pct(this.pos)}%`;
      this.clock.textContent = `${fmtOffset(this.pos)} / ${fmtOffset(this.plan.duration_ms)} · 北京时间 ${beijing(this.t0 + this.pos)}`;
      for (const fn of this.listeners) fn(this.t0 + this.pos);
    }
  }

  window.TongluPlayer = Player;
})();
