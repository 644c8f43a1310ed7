// 同录 Tonglu — shared page helpers. Plain ES2020, no build step; works in Chromium and Firefox.
"use strict";

const T = {};

T.api = async function (method, url, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["content-type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(url, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_e) { data = text; }
  if (!r.ok) {
    let msg = data && data.detail !== undefined ? data.detail : text;
    if (Array.isArray(msg)) msg = msg.map((d) => (d.loc || []).slice(1).join(".") + ": " + d.msg).join("; ");
    const err = new Error(`${r.status} ${msg}`);
    err.status = r.status;
    throw err;
  }
  return data;
};

T.pad = (n) => String(n).padStart(2, "0");

T.duration = function (ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  return `${T.pad(Math.floor(s / 3600))}:${T.pad(Math.floor((s % 3600) / 60))}:${T.pad(s % 60)}`;
};

// UTC instant (ms or ISO) shown in Asia/Shanghai, 24-hour clock.
T.local = function (t) {
  if (t === null || t === undefined) return "—";
  const d = new Date(typeof t === "number" ? t : Date.parse(t));
  return d.toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });
};

T.nsToMs = (ns) => (ns === null || ns === undefined ? null : Number(BigInt(ns) / 1000000n));

T.el = function (tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "style") e.style.cssText = v;  // CSSOM: allowed by the pages' CSP (a style attribute is not)
    else if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};

T.flash = function (target, text, ok) {
  const e = typeof target === "string" ? document.getElementById(target) : target;
  if (!e) return;
  e.textContent = text;
  e.className = ok ? "badge ok" : "badge bad";
};

// Wait for ICE gathering: WHIP/WHEP here are non-trickle (aiortc has no trickle ICE).
T.gathered = function (pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);
  });
};

async function exchange(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await T.gathered(pc);
  const headers = { "content-type": "application/sdp" };
  if (token) headers.authorization = "Bearer " + token;
  const r = await fetch(url, { method: "POST", headers, body: pc.localDescription.sdp, credentials: "same-origin" });
  if (r.status !== 201) throw new Error(`${r.status} ${await r.text()}`);
  await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
  return new URL(r.headers.get("location"), location.href).toString();
}

// ICE servers for a peer connection: time-limited TURN credentials when the site runs TURN
// (GET /api/ice-servers, for the signed-in user or invitation), else none (host candidates: the LAN).
T.iceServers = async function () {
  try {
    const r = await fetch("/api/ice-servers", { credentials: "same-origin", cache: "no-store" });
    return r.ok ? ((await r.json()).ice_servers || []) : [];
  } catch (e) { return []; }
};

// Watch one source of a session (WHEP): relayed as recorded, no re-encoding. Uses whep.js
// (reconnects with back-off) when the page loaded it, else a single attempt.
T.whep = async function (video, url) {
  if (window.TongluWhep) return window.TongluWhep.watch(url, null, video, { reconnect: true });
  const pc = new RTCPeerConnection({ iceServers: await T.iceServers() });
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.addEventListener("track", (ev) => { stream.addTrack(ev.track); video.srcObject = stream; });
  const resource = await exchange(pc, url);
  return { pc, resource, stop: async () => { pc.close(); await fetch(resource, { method: "DELETE", credentials: "same-origin" }).catch(() => {}); } };
};

// Publish a local stream (WHIP) with a source token.
T.whip = async function (stream, url, token) {
  const pc = new RTCPeerConnection({ iceServers: await T.iceServers() });
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
  const resource = await exchange(pc, url, token);
  return { pc, resource, stop: async () => { pc.close(); await fetch(resource, { method: "DELETE", headers: { authorization: "Bearer " + token } }).catch(() => {}); } };
};

window.T = T;
