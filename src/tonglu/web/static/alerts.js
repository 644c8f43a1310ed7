// 同录 Tonglu — live risk alerts from the server's rule timer (Server-Sent Events), with acknowledgement.
// The server evaluates the rules and stores every alert in the manifest; this page only shows them.
"use strict";

T.LEVELS = { info: "提示 info", warning: "预警 warning", alarm: "告警 alarm" };
window.__alertReceived = window.__alertReceived || {};  // alert key -> Date.now() when it arrived

T.alerts = function (box, url, opts) {
  opts = opts || {};
  const items = new Map();
  const keyOf = (a) => `${a.session}/${a.alert_id}`;
  function draw() {
    const list = [...items.values()].sort((a, b) => (a.ack ? 1 : 0) - (b.ack ? 1 : 0) || b.seq - a.seq);
    box.replaceChildren(...list.map((a) => {
      const ack = a.ack
        ? T.el("span", { class: "acked" }, `✔ 已确认 acknowledged: ${a.ack.name || a.ack.by} ${T.local(T.nsToMs(a.ack.time_ns))}`)
        : T.el("button", { type: "button", class: "ack-alert", onclick: async (ev) => {
            ev.target.disabled = true;
            try { await T.api("POST", `/api/sessions/${a.session}/alerts/${encodeURIComponent(a.alert_id)}/ack`, {}); }
            catch (e) { ev.target.disabled = false; ev.target.textContent = e.message; }
          } }, "确认 Acknowledge");
      return T.el("div", { class: `risk-alert level-${a.level}${a.ack ? " is-acked" : ""}`, role: "alert",
                          "data-alert-id": a.alert_id, "data-session": a.session, "data-rule": a.rule_id,
                          "data-acked": a.ack ? "1" : "0" },
        T.el("strong", {}, `[${a.severity}] ${a.title}`), " ",
        T.el("span", { class: "msg" }, a.message), " ",
        T.el("small", {}, `${a.legal_source} · ${T.local(T.nsToMs(a.time_ns))}` +
          (opts.showSession ? ` · ${a.case_number || ""} 会话 ${a.session}` : "")), " ", ack);
    }));
    if (opts.onChange) opts.onChange(list);
  }
  function put(a) {
    if (!items.has(keyOf(a))) window.__alertReceived[keyOf(a)] = Date.now();
    items.set(keyOf(a), a);
  }
  const es = new EventSource(url);
  es.addEventListener("snapshot", (ev) => { items.clear(); for (const a of JSON.parse(ev.data).alerts) put(a); draw(); });
  es.addEventListener("alert", (ev) => { put(JSON.parse(ev.data)); draw(); });
  es.addEventListener("ack", (ev) => {
    const k = JSON.parse(ev.data);
    const a = items.get(`${k.session}/${k.alert_id}`);
    if (a) { a.ack = k; draw(); }
  });
  return es;
};
