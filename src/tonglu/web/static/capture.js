/* 同录 Tonglu — in-room capture page: choose cameras/microphones, publish each source over WHIP,
 * reconnect on its own, show that recording is on. Plain JS, no build step (Chromium, Firefox).
 *
 * URL:   /capture/<session>#main=<token>&panorama=<token>[&<source>=<token>...]
 *        optional query: ?codec=h264|vp8 (preferred video codec), ?video=1920x1080@25
 * Tokens come in the fragment (never sent to a server), are kept in sessionStorage for reloads
 * of this tab, and the fragment is removed from the address bar.
 * Devices chosen per source are remembered in localStorage (by device id, falling back to label).
 * Reconnect: a peer connection that is failed/closed, disconnected for DISCONNECT_GRACE_MS, or not
 * connected after CONNECT_TIMEOUT_MS is dropped and a new WHIP offer is POSTed with the same token
 * (backoff 0.5 s doubling to 8 s; "source still connected" 409 -> retry after BUSY_RETRY_MS).
 * Debug handle for tests and support: window.tonglu (publishers, last status).
 */
(function () {
  "use strict";

  var DISCONNECT_GRACE_MS = 4000;
  var CONNECT_TIMEOUT_MS = 20000;
  var BUSY_RETRY_MS = 2500;
  var ICE_GATHER_TIMEOUT_MS = 3000;
  var TICK_MS = 500;
  var NO_PICTURE_MS = 3000;
  var STORE_DEVICES = "tonglu.capture.devices";
  var SOURCE_ORDER = ["main", "panorama"];
  var LABELS = { main: "近景 close-up", panorama: "全景 panorama" };
  var CONN_TEXT = {
    connected: "已连接 connected",
    reconnecting: "重连中 reconnecting",
    connecting: "连接中 connecting",
    down: "未连接 not connected",
  };

  // -- small pure helpers ------------------------------------------------------------------------
  function backoffMs(failures) {
    if (failures <= 0) return 0;
    var base = Math.min(500 * Math.pow(2, failures - 1), 8000);
    return Math.round(base * (0.8 + 0.4 * Math.random()));
  }

  function formatDuration(ms) {
    if (!(ms >= 0)) ms = 0;
    var s = Math.floor(ms / 1000);
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var sec = s % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return two(h) + ":" + two(m) + ":" + two(sec);
  }

  function formatBeijing(ns) {
    if (!ns) return "—";
    var d = new Date(Number(ns) / 1e6 + 8 * 3600 * 1000);
    return d.toISOString().replace("T", " ").slice(0, 19) + " (北京时间)";
  }

  function parseTokens(hash) {
    var out = {};
    var text = (hash || "").replace(/^#/, "");
    if (!text) return out;
    new URLSearchParams(text).forEach(function (value, key) {
      if (/^[A-Za-z0-9_-]{1,128}$/.test(key) && value) out[key] = value;
    });
    return out;
  }

  function parseVideo(spec) {
    var m = /^(\d{3,4})x(\d{3,4})(?:@(\d{1,2}))?$/.exec(spec || "");
    if (!m) return { width: 1920, height: 1080, fps: 25 };
    return { width: +m[1], height: +m[2], fps: m[3] ? +m[3] : 25 };
  }

  function sortedSources(tokens) {
    return Object.keys(tokens).sort(function (a, b) {
      var ia = SOURCE_ORDER.indexOf(a), ib = SOURCE_ORDER.indexOf(b);
      if (ia < 0) ia = 99;
      if (ib < 0) ib = 99;
      return ia - ib || (a < b ? -1 : a > b ? 1 : 0);
    });
  }

  function $(sel, root) { return (root || document).querySelector(sel); }

  function readJson(storage, key) {
    try { return JSON.parse(storage.getItem(key) || "null"); } catch (e) { return null; }
  }

  function readJsonText(text) {
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  function writeJson(storage, key, value) {
    try { storage.setItem(key, JSON.stringify(value)); } catch (e) { /* private mode: not fatal */ }
  }

  function WhipError(status, code, detail) {
    this.status = status;
    this.code = code || "";
    this.detail = detail || "";
    this.message = "WHIP " + status + " " + this.code + " " + this.detail;
  }

  async function errorInfo(res) {
    var text = "";
    try { text = await res.text(); } catch (e) { /* ignore */ }
    try {
      var j = JSON.parse(text);
      return { error: j.error || "", detail: j.detail || text };
    } catch (e) {
      return { error: "", detail: text };
    }
  }

  function waitIceGathering(pc, timeoutMs) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise(function (resolve) {
      var timer = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
      function check() { if (pc.iceGatheringState === "complete") done(); }
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  function preferCodec(pc, codec) {
    if (!codec || typeof RTCRtpReceiver === "undefined" || !RTCRtpReceiver.getCapabilities) return;
    var caps = RTCRtpReceiver.getCapabilities("video");
    if (!caps) return;
    var want = "video/" + codec.toLowerCase();
    function rank(c) {
      var mime = c.mimeType.toLowerCase();
      if (mime !== want) return 2;
      var fmtp = c.sdpFmtpLine || "";
      if (want === "video/h264") {
        if (fmtp.indexOf("packetization-mode=1") < 0) return 1;
        return fmtp.indexOf("profile-level-id=42e01f") >= 0 ? 0 : 0.5;
      }
      return 0;
    }
    var ordered = caps.codecs.slice().sort(function (a, b) { return rank(a) - rank(b); });
    pc.getTransceivers().forEach(function (t) {
      if (t.sender && t.sender.track && t.sender.track.kind === "video" && t.setCodecPreferences) {
        try { t.setCodecPreferences(ordered); } catch (e) { console.warn("codec preference refused", e); }
      }
    });
  }

  // -- one source: its devices, stream, preview and WHIP peer -------------------------------------
  function Publisher(app, source, token, index) {
    this.app = app;
    this.source = source;
    this.token = token;
    this.index = index;
    this.whipUrl = "/whip/" + encodeURIComponent(app.sid) + "/" + encodeURIComponent(source);
    this.stream = null;
    this.pc = null;
    this.resource = null; // WHIP resource URL (Location)
    this.pcSince = 0;
    this.disconnectedSince = null;
    this.failures = 0;
    this.nextAttempt = 0;
    this.busy = false;
    this.stopped = false;
    this.fatal = null;
    this.everConnected = false;
    this.reconnects = 0;
    this.ui = null;
    this.state = "down";
    this.noPicture = false;
  }

  Publisher.prototype.log = function (msg) {
    console.log("[tonglu capture " + this.source + "] " + msg);
  };

  Publisher.prototype.setState = function (state, detail) {
    this.state = state;
    if (!this.ui) { this.app.render(); return; }
    var el = $(".conn", this.ui);
    el.textContent = CONN_TEXT[state] || state;
    el.className = "conn conn-" + state;
    if (detail !== undefined) $(".detail", this.ui).textContent = detail;
    this.app.render();
  };

  Publisher.prototype.constraints = function () {
    var v = this.app.video;
    var cam = $(".camera", this.ui).value;
    var mic = $(".microphone", this.ui).value;
    return {
      video: {
        deviceId: cam ? { exact: cam } : undefined,
        width: { ideal: v.width },
        height: { ideal: v.height },
        frameRate: { ideal: v.fps },
      },
      // evidence: each microphone is its own raw track (never mixed); echo cancellation is on
      // because the room plays the remote parties (their voices would come back to them)
      audio: mic === "none" ? false : {
        deviceId: mic ? { exact: mic } : undefined,
        echoCancellation: true,
        noiseSuppression: false,
        autoGainControl: false,
      },
    };
  };

  Publisher.prototype.openDevices = async function () {
    if (this.stopped) return;
    var stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia(this.constraints());
    } catch (e) {
      this.setState(this.state, "无法打开设备 cannot open device: " + e.name + " " + (e.message || ""));
      throw e;
    }
    if (this.stopped) { // the session ended while the camera was opening
      stream.getTracks().forEach(function (t) { t.stop(); });
      return;
    }
    var old = this.stream;
    this.stream = stream;
    $(".preview", this.ui).srcObject = stream;
    this.lastFrames = undefined;
    if (this.pc) {
      var senders = this.pc.getSenders();
      stream.getTracks().forEach(function (track) {
        var sender = senders.find(function (s) {
          var t = s.track;
          return t ? t.kind === track.kind : false;
        });
        if (sender) sender.replaceTrack(track);
      });
    }
    if (old) old.getTracks().forEach(function (t) { t.stop(); });
  };

  Publisher.prototype.connectOnce = async function () {
    var pc = new RTCPeerConnection({ iceServers: await this.app.iceServersNow(), bundlePolicy: "max-bundle" });
    var self = this;
    this.pc = pc;
    this.pcSince = Date.now();
    this.disconnectedSince = null;
    this.lastFrames = undefined;
    this.lastBytes = undefined;
    pc.addEventListener("connectionstatechange", function () { self.tick(Date.now()); });
    var stream = this.stream;
    ["video", "audio"].forEach(function (kind) {
      var track = stream ? stream.getTracks().find(function (t) { return t.kind === kind; }) : null;
      if (track) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    });
    preferCodec(pc, this.app.codec);
    await pc.setLocalDescription(await pc.createOffer());
    await waitIceGathering(pc, ICE_GATHER_TIMEOUT_MS);
    var res = await fetch(this.whipUrl, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: "Bearer " + this.token },
      body: pc.localDescription.sdp,
      cache: "no-store",
    });
    if (res.status === 201) {
      var answer = await res.text();
      var loc = res.headers.get("Location");
      if (this.pc !== pc) return; // dropped meanwhile
      this.resource = loc ? new URL(loc, location.href).href : null;
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      this.log("published, resource " + (loc || "?"));
      return;
    }
    var info = await errorInfo(res);
    if (this.pc === pc) this.pc = null;
    pc.close();
    throw new WhipError(res.status, info.error, info.detail);
  };

  Publisher.prototype.attempt = async function () {
    if (this.busy || this.stopped || this.fatal) return;
    this.busy = true;
    this.setState(this.everConnected ? "reconnecting" : "connecting");
    try {
      await this.connectOnce();
    } catch (e) {
      var now = Date.now();
      if (e instanceof WhipError) {
        this.log("offer refused: " + e.message);
        if (e.status === 409 && e.code === "SessionStopped") {
          this.busy = false;
          this.app.sessionStopped();
          return;
        }
        if (e.status === 409) {
          this.nextAttempt = now + BUSY_RETRY_MS;
          this.setState("reconnecting", "上一连接尚未断开，稍后重试 previous connection still open, retrying");
        } else if (e.status === 401 || e.status === 403 || e.status === 404) {
          this.fatal = e;
          this.setState("down", "无法推流 cannot publish: " + e.detail);
          this.app.showError("信号源 " + this.source + " 被拒绝 (" + e.status + "): " + e.detail);
        } else {
          this.failures += 1;
          this.nextAttempt = now + backoffMs(this.failures);
          this.setState("reconnecting", "推流失败，正在重试 publish failed, retrying: " + e.status + " " + e.detail);
        }
      } else {
        this.failures += 1;
        this.nextAttempt = now + backoffMs(this.failures);
        if (this.pc) { try { this.pc.close(); } catch (x) { /* ignore */ } this.pc = null; }
        this.setState("reconnecting", "网络错误，正在重试 network error, retrying: " + (e && e.message));
      }
    } finally {
      this.busy = false;
    }
  };

  Publisher.prototype.drop = function (why) {
    var pc = this.pc;
    this.pc = null;
    this.resource = null;
    if (pc) { try { pc.close(); } catch (e) { /* ignore */ } }
    this.failures += 1;
    this.reconnects += 1;
    this.nextAttempt = Date.now() + backoffMs(this.failures);
    this.log("connection lost (" + why + "), re-publishing");
    this.setState("reconnecting", "连接中断，正在重连 connection lost (" + why + "), reconnecting");
  };

  Publisher.prototype.tick = function (now) {
    if (this.stopped || this.fatal || this.busy || !this.stream) return;
    var pc = this.pc;
    if (!pc) {
      if (now >= this.nextAttempt) this.attempt();
      return;
    }
    var st = pc.connectionState;
    if (pc.signalingState === "closed" || st === "failed" || st === "closed") {
      this.drop(pc.signalingState === "closed" ? "closed" : st);
      return;
    }
    if (st === "connected") {
      this.disconnectedSince = null;
      if (this.state !== "connected") {
        this.failures = 0;
        this.everConnected = true;
        this.setState("connected", "");
        var app = this.app;
        setTimeout(function () { app.pollStatus(); }, 700); // the recorder's view, soon
      }
      return;
    }
    if (st === "disconnected") {
      if (this.disconnectedSince === null) this.disconnectedSince = now;
      if (now - this.disconnectedSince > DISCONNECT_GRACE_MS) this.drop("disconnected");
      else if (this.state !== "reconnecting") this.setState("reconnecting");
      return;
    }
    if (now - this.pcSince > CONNECT_TIMEOUT_MS) this.drop("timeout");
  };

  Publisher.prototype.stats = async function () {
    var pc = this.pc;
    if (!pc || pc.connectionState !== "connected") return;
    var report = await pc.getStats();
    var codecs = {}, video = null, level = null;
    report.forEach(function (s) {
      if (s.type === "codec") codecs[s.id] = s.mimeType;
      if (s.type === "outbound-rtp" && s.kind === "video") video = s;
      if (s.type === "media-source" && s.kind === "audio" && typeof s.audioLevel === "number") level = s.audioLevel;
    });
    var parts = [];
    var now = Date.now();
    if (video) {
      // a camera can be "live" yet give the encoder nothing (e.g. a depth camera): say so loudly
      if (this.lastFrames === undefined || video.framesEncoded !== this.lastFrames) {
        this.lastFrames = video.framesEncoded;
        this.framesChangedAt = now;
      }
      var stalled = now - this.framesChangedAt >= NO_PICTURE_MS;
      if (stalled !== this.noPicture) {
        this.noPicture = stalled;
        this.ui.classList.toggle("no-picture", stalled);
        this.app.render();
      }
      if (stalled) parts.push("⚠ 摄像头无画面，未在录制画面 no picture from this camera: video is not being recorded");
      var bits = this.lastBytes !== undefined ? (video.bytesSent - this.lastBytes) * 8 / ((video.timestamp - this.lastTs) / 1000) : 0;
      this.lastBytes = video.bytesSent;
      this.lastTs = video.timestamp;
      parts.push((codecs[video.codecId] || "video").replace("video/", ""));
      if (video.frameWidth) parts.push(video.frameWidth + "×" + video.frameHeight);
      if (video.framesPerSecond) parts.push(Math.round(video.framesPerSecond) + " fps");
      if (bits > 0) parts.push(Math.round(bits / 1000) + " kbit/s");
      this.codec = codecs[video.codecId] || null;
    }
    $(".detail", this.ui).textContent = parts.join(" · ");
    if (level !== null) $(".level", this.ui).style.width = Math.min(100, Math.round(Math.sqrt(level) * 100)) + "%";
  };

  Publisher.prototype.stop = function () {
    this.stopped = true;
    if (this.pc) { try { this.pc.close(); } catch (e) { /* ignore */ } }
    this.pc = null;
    if (this.stream) this.stream.getTracks().forEach(function (t) { t.stop(); });
    this.setState("down", "录像已结束，设备已释放 recording ended, devices released");
  };

  Publisher.prototype.unpublishOnUnload = function () {
    if (!this.resource) return;
    try {
      fetch(this.resource, {
        method: "DELETE",
        headers: { Authorization: "Bearer " + this.token },
        keepalive: true,
      });
    } catch (e) { /* the recorder notices the silence anyway */ }
  };

  // -- the page ------------------------------------------------------------------------------------
  function App() {
    var body = document.body;
    var params = new URLSearchParams(location.search);
    this.sid = body.dataset.session;
    this.pollMs = Math.max(1, Number(body.dataset.pollS || 3)) * 1000;
    this.codec = (params.get("codec") || "").toLowerCase() || null;
    this.video = parseVideo(params.get("video"));
    this.publishers = {};
    this.status = null;
    this.statusError = null;
    this.clockOffsetMs = 0;
    this.stoppedSession = false;
    var labels = document.getElementById("role-labels");
    this.roleLabels = (labels && readJsonText(labels.textContent)) || {};
  }

  App.prototype.tokens = function () {
    var key = "tonglu.capture.tokens." + this.sid;
    var tokens = parseTokens(location.hash);
    if (Object.keys(tokens).length) {
      writeJson(sessionStorage, key, tokens);
      history.replaceState(null, "", location.pathname + location.search); // tokens off the address bar
      return tokens;
    }
    return readJson(sessionStorage, key) || {};
  };

  App.prototype.showError = function (text) {
    var el = $("#error");
    el.hidden = false;
    el.textContent = text;
  };

  App.prototype.devicePrefs = function () {
    return readJson(localStorage, STORE_DEVICES) || {};
  };

  App.prototype.rememberDevices = function (pub) {
    var prefs = this.devicePrefs();
    function pick(sel) {
      var opt = sel.options[sel.selectedIndex];
      return opt ? { id: opt.value, label: opt.textContent } : null;
    }
    prefs[pub.source] = { camera: pick($(".camera", pub.ui)), microphone: pick($(".microphone", pub.ui)) };
    writeJson(localStorage, STORE_DEVICES, prefs);
  };

  function fillSelect(sel, devices, remembered, fallbackIndex, allowNone) {
    sel.innerHTML = "";
    devices.forEach(function (d, i) {
      var opt = document.createElement("option");
      opt.value = d.deviceId;
      opt.textContent = d.label || (d.kind === "videoinput" ? "摄像头 " : "麦克风 ") + (i + 1);
      sel.appendChild(opt);
    });
    if (allowNone) {
      var none = document.createElement("option");
      none.value = "none";
      none.textContent = "（不使用 none）";
      sel.appendChild(none);
    }
    var chosen = null;
    if (remembered) {
      chosen = devices.find(function (d) { return d.deviceId === remembered.id; }) ||
        devices.find(function (d) { return d.label && d.label === remembered.label; }) || null;
    }
    if (!chosen && devices.length) chosen = devices[fallbackIndex % devices.length];
    if (chosen) sel.value = chosen.deviceId;
  }

  App.prototype.listDevices = async function () {
    // labels (and stable ids) are only visible once the user allowed capture
    var probe = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    probe.getTracks().forEach(function (t) { t.stop(); });
    var all = await navigator.mediaDevices.enumerateDevices();
    var cams = all.filter(function (d) { return d.kind === "videoinput"; });
    var mics = all.filter(function (d) {
      return d.kind === "audioinput" && d.deviceId !== "default" && d.deviceId !== "communications";
    });
    if (!mics.length) mics = all.filter(function (d) { return d.kind === "audioinput"; });
    return { cams: cams, mics: mics };
  };

  App.prototype.buildPanels = function (sources, devices) {
    var self = this;
    var prefs = this.devicePrefs();
    var tpl = $("#source-template");
    sources.forEach(function (source, i) {
      var pub = self.publishers[source];
      var node = tpl.content.firstElementChild.cloneNode(true);
      node.dataset.source = source;
      node.id = "source-" + source;
      $(".source-label", node).textContent = LABELS[source] || source;
      $(".source-name", node).textContent = source;
      var remembered = prefs[source] || {};
      // one camera per source (the i-th by default); two sources on one camera if there is only one
      fillSelect($(".camera", node), devices.cams, remembered.camera, i, false);
      fillSelect($(".microphone", node), devices.mics, remembered.microphone, i, true);
      pub.ui = node;
      $("#sources").appendChild(node);
      [".camera", ".microphone"].forEach(function (sel) {
        $(sel, node).addEventListener("change", function () {
          self.rememberDevices(pub);
          pub.openDevices().catch(function () { /* shown on the panel */ });
        });
      });
      self.rememberDevices(pub);
    });
  };

  App.prototype.sessionStopped = function () {
    if (this.stoppedSession) return;
    this.stoppedSession = true;
    Object.values(this.publishers).forEach(function (p) { p.stop(); });
    this.render();
  };

  // TURN credentials come with the capture status (under the source token), time-limited: use
  // the last ones while they have a minute left, else ask for the status first
  App.prototype.iceServersNow = async function () {
    var fresh = function (list) {
      return list && list.every(function (s) { return !s.expires_s || s.expires_s * 1000 - Date.now() > 60000; });
    };
    if (!fresh(this.iceServers)) await this.pollStatus();
    return fresh(this.iceServers) ? this.iceServers : [];
  };

  App.prototype.pollStatus = async function () {
    var first = Object.values(this.publishers)[0];
    if (!first) return;
    try {
      var t0 = Date.now();
      var res = await fetch("/api/sessions/" + encodeURIComponent(this.sid) + "/capture-status", {
        headers: { Authorization: "Bearer " + first.token },
        cache: "no-store",
      });
      if (!res.ok) {
        var info = await errorInfo(res);
        this.statusError = res.status + " " + info.detail;
      } else {
        var st = await res.json();
        var t1 = Date.now();
        this.clockOffsetMs = st.now_ns / 1e6 - (t0 + t1) / 2; // server clock minus this computer's
        this.status = st;
        this.iceServers = st.ice_servers || [];
        this.statusError = null;
        if (st.state === "stopped") this.sessionStopped();
        else this.syncParties(st, first.token);
      }
    } catch (e) {
      this.statusError = String(e && e.message);
    }
    this.render();
  };

  // -- room playback: every remote party of the session, by name and role (TongluParty, party.js) --
  App.prototype.syncParties = function (st, token) {
    var self = this;
    var parties = st.parties || [];
    var key = parties.map(function (p) { return p.source; }).join(",");
    var handle = this.party;
    var broken = handle && handle.pc && ["failed", "closed"].indexOf(handle.pc.connectionState) >= 0;
    if (key === this.partyKey && !broken) return;
    if (this.partyBusy || typeof TongluParty === "undefined") return;
    this.partyBusy = true;
    this.partyKey = key;
    var byId = {};
    parties.forEach(function (p) { byId[p.source] = p; });
    $("#party-section").hidden = parties.length === 0;
    (async function () {
      try {
        if (handle) { self.party = null; await handle.stop(); }
        if (!parties.length) return;
        self.party = await TongluParty.watch({
          sid: self.sid, token: token, pairs: parties.length, grid: $("#party-grid"), iceServers: self.iceServers,
          label: function (source) {
            var p = byId[source] || {};
            return { text: (p.role_label || p.role || "") + " " + (p.name || source), role: p.role };
          },
        });
      } catch (e) {
        self.partyKey = null; // retried on the next poll
        console.warn("party view failed", e);
      } finally {
        self.partyBusy = false;
      }
    })();
  };

  App.prototype.render = function () {
    var st = this.status;
    var rec = $("#rec"), label = $("#rec-label");
    var pubs = Object.values(this.publishers);
    var serverUp = 0;
    if (st && st.sources) {
      pubs.forEach(function (p) { if (st.sources[p.source] && st.sources[p.source].connected) serverUp += 1; });
    }
    var localUp = pubs.filter(function (p) { return p.state === "connected"; }).length;
    var cls, text;
    if (this.stoppedSession || (st && st.state === "stopped")) {
      cls = "stopped"; text = "■ 录像已结束 STOPPED";
    } else if (st && st.state === "recording" && serverUp > 0 && localUp > 0) {
      cls = serverUp === pubs.length ? "on" : "on partial";
      text = "● 正在录像 REC";
    } else {
      cls = "idle"; text = st ? "○ 未在录像 NOT RECORDING — 正在连接 connecting" : "○ 正在连接 Connecting…";
    }
    rec.className = "rec " + cls;
    label.textContent = text;
    document.body.dataset.rec = cls.split(" ")[0];
    if (st) {
      $("#case-number").textContent = st.case_number || "—";
      $("#room").textContent = st.room || "—";
      $("#started").textContent = formatBeijing(st.started_ns);
      var mon = $("#monitored");
      mon.hidden = !st.monitored;
      // every viewer by name and role: nobody watches the room covertly
      var watchers = st.watchers || [];
      $("#viewer-count").textContent = watchers.length ? "：" + watchers.map(function (w) {
        return w.name + " (" + (w.role_label || w.role) + ")";
      }).join("、") : (st.viewers > 1 ? "(" + st.viewers + ")" : "");
      $("#consultation").hidden = !st.consultation;
      var parts = st.participants || [];
      $("#participants").hidden = parts.length === 0;
      var roles = this.roleLabels;
      $("#participant-list").textContent = parts.map(function (p) {
        return p.name + (p.role ? " (" + (roles[p.role] || p.role) + ")" : "");
      }).join("、");
    }
    var down = pubs.filter(function (p) { return p.state !== "connected" || p.noPicture; })
      .map(function (p) { return p.source + (p.noPicture ? " (无画面 no picture)" : ""); });
    var alarm = $("#alarm");
    var warn = [];
    if (!this.stoppedSession && cls.indexOf("on") === 0 && down.length) {
      warn.push("⚠ 部分画面未在录制 not recording: " + down.join(", "));
    }
    if (this.statusError && !this.stoppedSession) warn.push("状态查询失败 status unavailable: " + this.statusError);
    var hours = this.elapsedMs() / 3600000;
    if (!this.stoppedSession && st && st.state === "recording") {
      if (hours >= 24) warn.push("⚠ 已超过 24 小时 over 24 hours");
      else if (hours >= 12) warn.push("⚠ 已超过 12 小时 over 12 hours");
    }
    alarm.hidden = warn.length === 0;
    alarm.textContent = warn.join("　");
  };

  App.prototype.elapsedMs = function () {
    var st = this.status;
    if (!st || !st.started_ns) return 0;
    var end = st.stopped_ns ? st.stopped_ns / 1e6 : Date.now() + this.clockOffsetMs;
    return end - st.started_ns / 1e6;
  };

  App.prototype.tickDuration = function () {
    $("#rec-duration").textContent = this.status ? formatDuration(this.elapsedMs()) : "--:--:--";
  };

  App.prototype.start = async function () {
    var self = this;
    var tokens = this.tokens();
    var sources = sortedSources(tokens);
    if (!sources.length) {
      this.showError("缺少信号源令牌：请从讯问控制台的采集链接打开本页 " +
        "(no source tokens: open this page from the capture link the console shows)");
      this.render();
      return;
    }
    sources.forEach(function (s, i) { self.publishers[s] = new Publisher(self, s, tokens[s], i); });
    window.addEventListener("pagehide", function () {
      Object.values(self.publishers).forEach(function (p) { p.unpublishOnUnload(); });
    });
    window.addEventListener("beforeunload", function (ev) {
      if (!self.stoppedSession) { ev.preventDefault(); ev.returnValue = ""; }
    });
    this.pollStatus();
    setInterval(function () { self.pollStatus(); }, this.pollMs);
    setInterval(function () { self.tickDuration(); }, 250);
    var devices;
    try {
      devices = await this.listDevices();
    } catch (e) {
      this.showError("无法访问摄像头/麦克风 cannot access camera/microphone: " + e.name + " " + (e.message || ""));
      return;
    }
    if (!devices.cams.length) {
      this.showError("未发现摄像头 no camera found");
      return;
    }
    this.buildPanels(sources, devices);
    if (this.stoppedSession) { this.render(); return; } // nothing to publish into
    for (var i = 0; i < sources.length; i++) {
      var pub = this.publishers[sources[i]];
      try { await pub.openDevices(); } catch (e) { /* shown on the panel; retried on a device change */ }
    }
    setInterval(function () {
      var now = Date.now();
      Object.values(self.publishers).forEach(function (p) { p.tick(now); });
    }, TICK_MS);
    setInterval(function () {
      Object.values(self.publishers).forEach(function (p) { p.stats().catch(function () {}); });
    }, 2000);
    Object.values(this.publishers).forEach(function (p) { p.tick(Date.now()); });
  };

  var app = new App();
  window.tonglu = app;
  window.tongluCapture = { backoffMs: backoffMs, formatDuration: formatDuration, parseTokens: parseTokens,
    parseVideo: parseVideo, sortedSources: sortedSources };
  app.start().catch(function (e) {
    console.error(e);
    app.showError("采集页面出错 capture page error: " + (e && e.message));
  });
})();
