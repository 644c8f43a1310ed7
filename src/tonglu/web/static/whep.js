/* 同录 Tonglu — a small WHEP client (draft-ietf-wish-whep) for live viewing. Plain JS, no build.
 *
 *   <script src="/static/whep.js"></script>
 *   const h = await TongluWhep.watch("/whep/<session>/main", null, videoEl, { onstate: s => ... });
 *   ...
 *   await h.stop();            // DELETE the WHEP resource and close the connection
 *
 * watch(url, token, videoEl, options) -> Promise<handle>
 *   url      WHEP endpoint: /whep/{session}/{source}
 *   token    Bearer token (API token or invitation token), or null to use the page's login cookie
 *   videoEl  a <video> element; it gets the received stream (video and audio)
 *   options  { reconnect: true      re-POST a new offer when the connection fails (aiortc has no
 *                                   ICE restart), with a growing delay up to 10 s
 *              onstate(state, info) "connecting" | "connected" | "reconnecting" | "failed" | "stopped"
 *              video: true, audio: true }
 * handle: { pc, resource (the Location URL), state, stop() }
 * A refused request rejects with an Error whose .status is the HTTP status (401, 403, 404, 409...)
 * and whose message carries the server's reason (Chinese first, English in brackets).
 * The media is the recorder's relay of what the room sent, not re-encoded.
 */
(function () {
  "use strict";

  function gathered(pc, limitMs) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise(function (resolve) {
      var timer = setTimeout(resolve, limitMs);
      pc.addEventListener("icegatheringstatechange", function check() {
        if (pc.iceGatheringState === "complete") {
          clearTimeout(timer);
          pc.removeEventListener("icegatheringstatechange", check);
          resolve();
        }
      });
    });
  }

  function headers(token, extra) {
    var h = extra || {};
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  async function reason(response) {
    var text = await response.text();
    try { return JSON.parse(text).detail || text; } catch (e) { return text; }
  }

  // TURN credentials (time-limited) for a signed-in viewer; a token holder passes opts.iceServers
  async function iceServers(token, opts) {
    if (opts.iceServers) return opts.iceServers;
    if (token) return [];
    try {
      var r = await fetch("/api/ice-servers", { credentials: "same-origin", cache: "no-store" });
      return r.ok ? ((await r.json()).ice_servers || []) : [];
    } catch (e) { return []; }
  }

  async function connect(url, token, videoEl, opts) {
    var pc = new RTCPeerConnection({ iceServers: await iceServers(token, opts) });
    if (opts.video !== false) pc.addTransceiver("video", { direction: "recvonly" });
    if (opts.audio !== false) pc.addTransceiver("audio", { direction: "recvonly" });
    var stream = new MediaStream();
    pc.addEventListener("track", function (ev) {
      stream.addTrack(ev.track);
      if (videoEl && videoEl.srcObject !== stream) videoEl.srcObject = stream;
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, 3000); // non-trickle: the offer carries every candidate
      var r = await fetch(url, {
        method: "POST",
        headers: headers(token, { "Content-Type": "application/sdp" }),
        body: pc.localDescription.sdp,
        credentials: "same-origin",
      });
      if (r.status !== 201) {
        var err = new Error(r.status + " " + (await reason(r)));
        err.status = r.status;
        throw err;
      }
      var resource = new URL(r.headers.get("Location"), new URL(url, location.href)).toString();
      await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
      return { pc: pc, resource: resource };
    } catch (e) {
      pc.close();
      throw e;
    }
  }

  function release(resource, token) {
    if (!resource) return Promise.resolve();
    return fetch(resource, { method: "DELETE", headers: headers(token), credentials: "same-origin" })
      .catch(function () {});
  }

  async function watch(url, token, videoEl, options) {
    var opts = Object.assign({ reconnect: true, video: true, audio: true }, options || {});
    var handle = { pc: null, resource: null, state: "connecting", stop: null };
    var stopped = false, retryMs = 1000, timer = null;

    function report(state, info) {
      handle.state = state;
      if (opts.onstate) { try { opts.onstate(state, info || {}); } catch (e) { /* the page's problem */ } }
    }

    function watchState(pc) {
      pc.addEventListener("connectionstatechange", function () {
        if (stopped || pc !== handle.pc) return;
        if (pc.connectionState === "connected") { retryMs = 1000; report("connected"); }
        else if (pc.connectionState === "failed" || pc.connectionState === "closed") again();
      });
    }

    function again() {
      var old = handle.resource;
      if (handle.pc) handle.pc.close();
      handle.pc = null;
      release(old, token);
      if (!opts.reconnect || stopped) { report("failed"); return; }
      report("reconnecting", { inMs: retryMs });
      timer = setTimeout(async function () {
        if (stopped) return;
        try {
          var c = await connect(url, token, videoEl, opts);
          if (stopped) { c.pc.close(); release(c.resource, token); return; }
          handle.pc = c.pc; handle.resource = c.resource;
          watchState(c.pc);
          report("connecting");
        } catch (e) {
          // a refusal (not allowed, session stopped, unknown) will not heal by retrying
          if (e.status && e.status >= 400 && e.status < 500 && e.status !== 429) { report("failed", { error: e }); return; }
          retryMs = Math.min(retryMs * 2, 10000);
          again();
        }
      }, retryMs);
    }

    handle.stop = async function () {
      stopped = true;
      clearTimeout(timer);
      if (handle.pc) handle.pc.close();
      await release(handle.resource, token);
      handle.pc = null;
      report("stopped");
    };

    report("connecting");
    var first = await connect(url, token, videoEl, opts); // the first refusal rejects watch()
    handle.pc = first.pc; handle.resource = first.resource;
    watchState(first.pc);
    return handle;
  }

  window.TongluWhep = { watch: watch };
})();
