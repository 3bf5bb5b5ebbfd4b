// sepgw console: one Server-Sent Events stream (/api/events) read with fetch (so the
// credential travels in a header, never in the URL), drawn with the DOM and canvas only.
"use strict";

const S = { token: null, csrf: null, data: null, timeline: {}, meter: {}, window: 300,
            lastDraw: 0 };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (S.token) h["Authorization"] = "Bearer " + S.token;
  return h;
}

function toast(text, bad) {
  const t = $("toast");
  t.textContent = text;
  t.className = bad ? "bad" : "";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

function fmtTime(t) {
  const d = new Date(t * 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." +
    String(d.getMilliseconds()).padStart(3, "0").slice(0, 1);
}

function num(v, unit, digits) {
  if (v === null || v === undefined) return "–";
  return Number(v).toFixed(digits === undefined ? 0 : digits) + " " + unit;
}

// -- the stream ---------------------------------------------------------------------------

async function connect() {
  const conn = $("conn");
  try {
    const st = await fetch("/api/state", { headers: headers(), cache: "no-store" });
    if (st.status === 401) { askToken(); return; }
    if (!st.ok) throw new Error("state: HTTP " + st.status);
    const snap = await st.json();
    S.csrf = snap.csrf;
    $("you").textContent = "you: " + snap.you;
    const res = await fetch("/api/events", { headers: headers({ Accept: "text/event-stream" }),
                                             cache: "no-store" });
    if (res.status === 401) { askToken(); return; }
    if (!res.ok || !res.body) throw new Error("events: HTTP " + res.status);
    conn.textContent = "live"; conn.className = "conn on";
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let name = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) handle(name, JSON.parse(data));
      }
    }
    throw new Error("stream ended");
  } catch (e) {
    conn.textContent = "reconnecting (" + e.message + ")"; conn.className = "conn off";
    setTimeout(connect, 2000);
  }
}

function askToken() {
  $("conn").textContent = "credential needed"; $("conn").className = "conn off";
  $("login").hidden = false;
}

function handle(name, body) {
  if (name === "state") {
    S.data = body;
    S.timeline = body.timeline || {};
    S.meter = body.meter || {};
    S.window = body.window || S.window;
  } else if (name === "update" && S.data) {
    Object.assign(S.data, body);
    for (const ev of body.events || []) {
      (S.timeline[ev.scope] = S.timeline[ev.scope] || []).push(ev);
      if (S.timeline[ev.scope].length > 300) S.timeline[ev.scope].shift();
    }
    for (const [scope, samples] of Object.entries(body.samples || {})) {
      const series = (S.meter[scope] = S.meter[scope] || []);
      series.push(...samples);
      const horizon = body.time - S.window;
      while (series.length && series[0][0] < horizon) series.shift();
    }
  }
  render();
}

// -- actions ------------------------------------------------------------------------------

function confirmThen(text, action) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  const ok = $("confirm-ok"), cancel = $("confirm-cancel");
  const close = () => { ok.onclick = null; cancel.onclick = null; dialog.close(); };
  ok.onclick = () => { close(); send(action); };
  cancel.onclick = () => { close(); toast("not sent"); };
  dialog.showModal();
}

async function send(action) {
  try {
    const res = await fetch("/api/action", {
      method: "POST", cache: "no-store",
      headers: headers({ "Content-Type": "application/json", "X-Sepgw-CSRF": S.csrf || "" }),
      body: JSON.stringify(action),
    });
    const body = await res.json().catch(() => ({}));
    if (res.ok) toast(action.action + ": done");
    else toast(action.action + " refused: " + (body.error || ("HTTP " + res.status)), true);
  } catch (e) {
    toast(action.action + " failed: " + e.message, true);
  }
}

// -- drawing ------------------------------------------------------------------------------

const QUANTITIES = [["W", 1, "#1f5fbf"], ["var", 2, "#7a3db8"], ["V", 3, "#0a7d3b"],
                    ["Hz", 4, "#b54708"]];

// Four strips (W, var, V, Hz) over the last S.window seconds; ``target`` draws a dashed
// line on the W strip (the PEV's controlled output).
function plot(canvas, series, now, target) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600, h = canvas.clientHeight || 260;
  if (canvas.width !== Math.round(w * ratio)) {
    canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  g.font = "11px system-ui, sans-serif";
  // The plot spans the window, or the time since the first sample while that is shorter.
  const first = series.length ? series[0][0] : now;
  const span = Math.min(S.window, Math.max(10, now - first));
  const strip = h / QUANTITIES.length, left = 70, right = w - 8, t0 = now - span;
  const x = (t) => left + (right - left) * (t - t0) / span;
  QUANTITIES.forEach(([label, index, colour], i) => {
    const top = i * strip + 4, bottom = (i + 1) * strip - 6;
    const values = series.map((s) => s[index]).filter((v) => v !== null && v !== undefined);
    if (label === "W" && target !== null && target !== undefined) values.push(target);
    let lo = Math.min(...values), hi = Math.max(...values);
    if (!values.length) { lo = 0; hi = 1; }
    if (hi - lo < 1e-6) { const pad = Math.max(Math.abs(hi) * 0.01, label === "Hz" ? 0.05 : 1); lo -= pad; hi += pad; }
    const y = (v) => bottom - (bottom - top) * (v - lo) / (hi - lo);
    g.strokeStyle = "#d9dde3"; g.strokeRect(left, top, right - left, bottom - top);
    g.fillStyle = "#6b7280";
    g.fillText(hi.toFixed(label === "Hz" ? 2 : 0), 4, top + 10);
    g.fillText(lo.toFixed(label === "Hz" ? 2 : 0), 4, bottom);
    const last = series.length ? series[series.length - 1][index] : null;
    g.fillStyle = colour;
    g.fillText(label + " " + (last === null || last === undefined ? "–" :
      Number(last).toFixed(label === "Hz" ? 2 : 0)), 4, (top + bottom) / 2 + 4);
    if (label === "W" && target !== null && target !== undefined) {
      g.setLineDash([5, 4]); g.strokeStyle = "#999";
      g.beginPath(); g.moveTo(left, y(target)); g.lineTo(right, y(target)); g.stroke();
      g.setLineDash([]);
    }
    g.strokeStyle = colour; g.lineWidth = 1.5; g.beginPath();
    let started = false;
    for (const s of series) {
      const v = s[index];
      if (v === null || v === undefined || s[0] < t0) { started = false; continue; }
      if (!started) { g.moveTo(x(s[0]), y(v)); started = true; } else g.lineTo(x(s[0]), y(v));
    }
    g.stroke(); g.lineWidth = 1;
  });
  const last = series.length ? series[series.length - 1] : null;
  canvas.dataset.samples = String(series.length);
  canvas.dataset.lastW = last && last[1] !== null ? String(last[1]) : "";
}

function timeline(scope) {
  const box = el("div", { class: "timeline", "data-scope": scope });
  let session;
  for (const ev of (S.timeline[scope] || []).slice(-200)) {
    if (ev.session !== session && ev.session) {
      box.append(el("div", { class: "sep" }, "session of LFDI " + ev.session));
    }
    session = ev.session || session;
    box.append(el("div", { class: "ev " + ev.level, "data-kind": ev.kind },
      el("span", {}, fmtTime(ev.t)), el("span", { class: "kind" }, ev.kind),
      el("span", {}, ev.text, ev.requirements.length ?
        el("span", { class: "req" }, ev.requirements.join(" ")) : null)));
  }
  return box;
}

function kv(rows) {
  return el("table", {}, rows.map(([k, v, cls]) =>
    el("tr", {}, el("th", {}, k), el("td", { class: cls || null }, v))));
}

function elements(obj) {
  return Object.entries(obj).map(([k, v]) =>
    k + " " + (typeof v === "object" ? JSON.stringify(v) : v)).join("; ");
}

// -- EVSE ---------------------------------------------------------------------------------

function portCard(port, now) {
  const fault = port.contactor_fault;
  const card = el("section", { class: "card port", id: "port-" + port.port,
                               "data-state": port.state,
                               "data-authorized": String(port.authorized) });
  card.append(el("h2", {}, port.port,
    el("span", { class: "badge state " + (port.authorized ? "ok" : fault ? "bad" : "") },
      port.state),
    el("span", { class: "badge " + (port.authorized ? "ok" : "bad") },
      port.authorized ? "authorized to discharge" : "not authorized")));
  card.append(el("div", { class: "machine" }, port.states.map((s) =>
    el("span", { class: s === port.state ? ("here" + (fault ? " fault" : "")) : "" }, s))));
  const pev = port.pev;
  const left = el("div", {},
    el("h3", {}, "PEV"),
    kv(pev ? [["LFDI", pev.lfdi, "mono"], ["SFDI", pev.sfdi, "mono"],
              ["make/model (hwType)", pev.make_model || "none", "mono"],
              ["serial", pev.serial || "–", "mono"],
              ["connected", fmtTime(pev.connected_at)],
              ["opModEnergize", String(pev.energize)]]
       : [["PEV", port.state === "idle" ? "none on the link" : "no 2030.5 session"]]),
    el("h3", {}, "Authorization"),
    port.reasons.length ? el("ul", { class: "reasons" }, port.reasons.map((r) => el("li", {}, r)))
      : el("div", { class: "pass" }, "granted: every check passed"),
    el("h3", {}, "Contactor"),
    kv([["status", port.contactor], ["allowed to close", String(port.contactor_allowed)],
        ["sensed", port.contactor_sensed || "–"], ["feedback", port.contactor_feedback || "–"],
        ["fault", fault || "none", fault ? "fail" : null],
        ["meter fault", port.meter_fault || "none", port.meter_fault ? "fail" : null],
        ["violation", port.violation || "none", port.violation ? "fail" : null]]));
  const meter = port.meter;
  const canvas = el("canvas", { class: "plot meter", "data-port": port.port });
  const right = el("div", {},
    el("h3", {}, "Meter (last " + Math.round(S.window / 60) + " min): " +
      (meter ? [num(meter.w, "W"), num(meter.var, "var"), num(meter.v, "V", 1),
                num(meter.hz, "Hz", 2)].join(", ") : "no sample")),
    canvas);
  // A text field (numeric keyboard), not type=number: a re-render while it is edited
  // keeps its value, focus and selection, which a number field cannot report.
  const fixed = el("input", { type: "text", inputmode: "numeric", pattern: "-?[0-9]{1,3}",
                              value: 50, size: 4, class: "percent",
                              "aria-label": "opModFixedW percent (-100 to 100)" });
  const actions = el("div", { class: "actions" },
    "opModFixedW", fixed, "%",
    el("button", { class: "fixed-w", type: "button", disabled: !pev, onclick: () => {
      const text = fixed.value.trim();
      const percent = Number(text);
      if (!/^-?[0-9]{1,3}$/.test(text) || percent < -100 || percent > 100) {
        toast(`opModFixedW: ${JSON.stringify(fixed.value)} is not a whole percent from ` +
              "-100 to 100; not sent", true);
        return;
      }
      confirmThen(`Send DERControl opModFixedW ${percent} % to the PEV on ${port.port}` +
                  " (positive: the PEV discharges)?",
                  { action: "fixed-w", port: port.port, percent: percent });
    } },
      "Send fixed-w"),
    el("button", { class: "clear-fixed-w", type: "button", disabled: !pev, onclick: () =>
      confirmThen(`Withdraw the opModFixedW DERControl on ${port.port}?`,
                  { action: "clear-fixed-w", port: port.port }) }, "Clear fixed-w"),
    el("button", { class: "clear-fault danger", type: "button", disabled: !fault, onclick: () =>
      confirmThen(`Clear the contactor fault on ${port.port}? Only with the contacts ` +
                  "checked open.", { action: "clear-fault", port: port.port }) },
      "Clear fault"));
  right.append(actions);
  card.append(el("div", { class: "grid" }, left, right));
  card.append(el("h3", {}, "Controls in force and their Responses"));
  card.append(port.controls.length ? el("table", {},
    el("tr", {}, el("th", {}, "DERControl"), el("th", {}, "elements"), el("th", {}, "Responses")),
    port.controls.map((c) => el("tr", {},
      el("td", {}, c.description || c.mrid.slice(0, 8)),
      el("td", { class: "mono" }, elements(c.elements)),
      el("td", {}, c.responses.map((r) => r.name).join(", ") || "none yet"))))
    : el("div", { class: "kind" }, "none"));
  card.append(el("h3", {}, "Timeline"), timeline(port.port));
  requestAnimationFrame(() => plot(canvas, S.meter[port.port] || [], now, null));
  return card;
}

// -- PEV ----------------------------------------------------------------------------------

function pevView(d, now) {
  const pev = d.pev, report = d.report;
  const card = el("section", { class: "card pev", id: "pev",
                               "data-state": pev.state || "", "data-energize": String(!!pev.energize) });
  card.append(el("h2", {}, "PEV",
    el("span", { class: "badge" }, pev.connected ? pev.state : "no session"),
    el("span", { class: "badge " + (pev.energize ? "ok" : "bad") },
      pev.energize ? "authorized (opModEnergize true)" : "not authorized")));
  const applied = pev.applied || {};
  const target = applied.discharge_allowed && applied.opModFixedW_pct !== null &&
    applied.opModFixedW_pct !== undefined ? applied.opModFixedW_pct * pev.max_w / 100 : null;
  const canvas = el("canvas", { class: "plot inverter" });
  card.append(el("div", { class: "grid" },
    el("div", {},
      el("h3", {}, "State"),
      kv(pev.connected ? [["J3072 state", pev.state], ["sleeping", String(pev.sleeping)],
                          ["communications", pev.comms_ok ? "ok" : "LOST"],
                          ["LFDI", pev.lfdi, "mono"]] : [["session", "none yet"]]),
      el("h3", {}, "Inverter against its controls"),
      kv(pev.connected ? [
        ["output", num(pev.inverter.w, "W") + ", " + num(pev.inverter.var, "var")],
        ["state of charge", num(pev.inverter.soc_pct, "%", 1)],
        ["discharge allowed", String(applied.discharge_allowed)],
        ["opModFixedW", applied.opModFixedW_pct === null || applied.opModFixedW_pct === undefined
          ? "–" : applied.opModFixedW_pct + " % (" + num(target, "W") + ")"],
        ["opModMaxLimW", applied.opModMaxLimW_pct === null || applied.opModMaxLimW_pct === undefined
          ? "–" : applied.opModMaxLimW_pct + " %"],
        ["controls in effect", elements(pev.controls || {}), "mono"]] : []),
      el("div", { class: "actions" },
        el("button", { class: "sleep", type: "button", disabled: pev.state !== "periodic",
          onclick: () => confirmThen("Put the PEV to sleep (inverterStatus 2)?",
                                     { action: "sleep" }) }, "Sleep"),
        el("button", { class: "wake", type: "button", disabled: pev.state !== "periodic",
          onclick: () => confirmThen("Wake the PEV (re-read the management information)?",
                                     { action: "wake" }) }, "Wake"))),
    el("div", {}, el("h3", {}, "Inverter output (dashed: opModFixedW target)"), canvas)));
  card.append(el("h3", {}, "J3072 sequence (run report): " + (report.passed ? "passing" : "FAILING")));
  card.append(el("table", { class: "report" },
    el("tr", {}, el("th", {}, "step"), el("th", {}, "result"), el("th", {}, "ms"),
       el("th", {}, "requirements")),
    report.steps.map((s) => el("tr", {},
      el("td", {}, s.name, s.detail ? el("div", { class: "kind" }, s.detail) : null),
      el("td", { class: s.passed === false ? "fail" : "pass" },
        s.passed === null ? "…" : s.passed ? "pass" : "FAIL"),
      el("td", {}, s.seconds === null ? "" : (s.seconds * 1000).toFixed(1)),
      el("td", { class: "req" }, s.requirements.join(" "))))));
  card.append(el("h3", {}, "Timeline"), timeline("pev"));
  requestAnimationFrame(() => plot(canvas, S.meter.pev || [], now, target));
  return card;
}

function render() {
  const d = S.data;
  if (!d) return;
  $("role").textContent = d.role;
  $("name").textContent = d.name || "";
  const main = $("main");
  const keep = new Map();
  for (const input of main.querySelectorAll("input.percent")) {
    keep.set(input.closest(".port").id, [input.value, document.activeElement === input,
                                         input.selectionStart, input.selectionEnd,
                                         input.selectionDirection]);
  }
  const scroll = [...main.querySelectorAll(".timeline")].map((t) => t.scrollTop);
  const now = d.time;
  const cards = d.role === "evse" ? d.ports.map((p) => portCard(p, now)) : [pevView(d, now)];
  main.replaceChildren(...cards);
  for (const [id, [value, focused, start, end, direction]] of keep) {
    const input = document.querySelector("#" + CSS.escape(id) + " input.percent");
    if (!input) continue;
    input.value = value;
    if (focused) {
      input.focus();
      if (start !== null) input.setSelectionRange(start, end, direction || "none");
    }
  }
  [...main.querySelectorAll(".timeline")].forEach((t, i) => {
    t.scrollTop = scroll[i] === undefined ? t.scrollHeight : scroll[i];
  });
  document.body.dataset.ready = "1";
}

function start() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem("sepgw-console-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);
  }
  S.token = sessionStorage.getItem("sepgw-console-token");
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    S.token = $("token").value.trim();
    sessionStorage.setItem("sepgw-console-token", S.token);
    $("login").hidden = true;
    connect();
  });
  connect();
}

start();
