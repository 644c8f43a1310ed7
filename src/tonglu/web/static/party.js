/* 同录 Tonglu — party viewer (remote hearings, remote arraignment): one peer connection carries
 * every other party's sources (POST /party-whep/<session>), one recvonly video + audio pair per
 * source; the answer's `Tonglu-Sources` header names the source of each pair. Plain JS, no build.
 *
 *   const h = await TongluParty.watch({ sid, token, pairs, grid, label(source) -> {text, role}, iceServers });
 *   h.tiles[source] = { figure, video, stream, level() }   level(): audio energy 0..1 (WebAudio)
 *   await h.stop();
 *
 * token: the room's source token (the room display) or null (a participant's invitation cookie).
 * Audio: every received audio track plays in its own element; the browser mixes them (the server
 * forwards every room microphone as its own track and never decodes or mixes). Court layout: the
 * judge's tile gets class "big" (tonglu.css / capture.css), the others are tiled.
 * The caller re-watches when the set of parties changes (see capture.js / remote.html).
 */
(function () {
  "use strict";

  function gathered(pc, limitMs) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise(function (resolve) {
      var timer = setTimeout(resolve, limitMs);
      pc.addEventListener("icegatheringstatechange", function check() {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      });
    });
  }

  var audioCtx = null;
  function ctx() {
    if (!audioCtx) audioCtx = new AudioContext();
    if (audioCtx.state === "suspended") audioCtx.resume().catch(function () {});
    return audioCtx;
  }

  function meter(stream) {
    var an = null, buf = null;
    return function () {
      if (!stream.getAudioTracks().length) return 0;
      if (!an) {
        an = ctx().createAnalyser();
        an.fftSize = 1024;
        ctx().createMediaStreamSource(stream).connect(an);
        buf = new Float32Array(an.fftSize);
      }
      an.getFloatTimeDomainData(buf);
      var sum = 0;
      for (var i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
      return Math.sqrt(sum / buf.length);
    };
  }

  function tile(grid, source, info) {
    var fig = document.createElement("figure");
    fig.className = "party-tile" + (info.role === "judge" ? " big" : "");
    fig.dataset.source = source;
    fig.dataset.role = info.role || "";
    var video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    var cap = document.createElement("figcaption");
    cap.textContent = info.text || source;
    fig.appendChild(video);
    fig.appendChild(cap);
    if (info.role === "judge") grid.insertBefore(fig, grid.firstChild); else grid.appendChild(fig);
    var stream = new MediaStream();
    video.srcObject = stream;
    var frames = 0;
    function onFrame() { frames += 1; video.requestVideoFrameCallback(onFrame); }
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(onFrame);
    return { figure: fig, video: video, stream: stream, level: meter(stream),
             frames: function () { return frames; } };
  }

  async function watch(opts) {
    var url = "/party-whep/" + encodeURIComponent(opts.sid);
    var ice = opts.iceServers;
    if (!ice && !opts.token) { // a participant (invitation cookie): its own TURN credentials
      try {
        var ir = await fetch("/api/ice-servers", { credentials: "same-origin", cache: "no-store" });
        ice = ir.ok ? ((await ir.json()).ice_servers || []) : [];
      } catch (e) { ice = []; }
    }
    var pc = new RTCPeerConnection({ iceServers: ice || [], bundlePolicy: "max-bundle" });
    var n = Math.max(1, opts.pairs);
    for (var i = 0; i < n; i++) {
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.addTransceiver("audio", { direction: "recvonly" });
    }
    var handle = { pc: pc, sources: [], tiles: {}, resource: null, stop: null };
    var pending = [];
    pc.addEventListener("track", function (ev) {
      var idx = pc.getTransceivers().indexOf(ev.transceiver);
      pending.push([Math.floor(idx / 2), ev.track]);
      attach();
    });
    function attach() {
      if (!handle.sources.length) return;
      pending.splice(0).forEach(function (p) {
        var source = handle.sources[p[0]];
        if (!source) return;
        var t = handle.tiles[source];
        if (!t) t = handle.tiles[source] = tile(opts.grid, source, opts.label(source));
        t.stream.addTrack(p[1]);
        t.video.play().catch(function () { /* autoplay with sound needs a gesture on some setups */ });
      });
    }
    var headers = { "Content-Type": "application/sdp" };
    if (opts.token) headers.Authorization = "Bearer " + opts.token;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, 3000);
      var r = await fetch(url, { method: "POST", headers: headers, body: pc.localDescription.sdp,
                                 credentials: "same-origin" });
      if (r.status !== 201) {
        var text = await r.text();
        var err = new Error(r.status + " " + text);
        err.status = r.status;
        throw err;
      }
      handle.resource = new URL(r.headers.get("Location"), location.href).toString();
      handle.sources = (r.headers.get("Tonglu-Sources") || "").split(",").filter(Boolean);
      await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
      attach();
    } catch (e) {
      pc.close();
      throw e;
    }
    pc.addEventListener("connectionstatechange", function () {
      if (opts.onstate) opts.onstate(pc.connectionState);
    });
    handle.stop = async function () {
      pc.close();
      Object.values(handle.tiles).forEach(function (t) { t.figure.remove(); });
      handle.tiles = {};
      var h = {};
      if (opts.token) h.Authorization = "Bearer " + opts.token;
      if (handle.resource) {
        await fetch(handle.resource, { method: "DELETE", headers: h, credentials: "same-origin" })
          .catch(function () {});
      }
    };
    return handle;
  }

  window.TongluParty = { watch: watch };
})();
