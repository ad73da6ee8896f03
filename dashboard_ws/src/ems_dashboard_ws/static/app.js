// EMS live dashboard: one WebSocket, one card per device, no build step, no dependencies.
// Device data is only ever written with textContent, never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "ems.token";
  const TOPICS = ["ems/+/status", "ems/+/telemetry"];
  const SPARK_POINTS = 120;
  const PHASES = ["A", "B", "C"];
  const POLICY_VIOLATION = 1008;

  const $ = (id) => document.getElementById(id);
  const devices = new Map();
  let socket = null;
  let retryDelay = 1000;
  let retryTimer = null;
  let toastTimer = null;

  // ---- formatting ---------------------------------------------------------------------

  const fmt = (value, digits) =>
    typeof value === "number" && Number.isFinite(value)
      ? value.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits })
      : "–";

  function powerParts(watts) {
    if (typeof watts !== "number" || !Number.isFinite(watts)) return ["–", "W"];
    if (Math.abs(watts) >= 10000) return [fmt(watts / 1000, 2), "kW"];
    return [fmt(watts, 0), "W"];
  }

  function ago(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 5) return "just now";
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ago`;
  }

  function parseTs(ts) {
    if (typeof ts === "number") return ts;
    const ms = Date.parse(ts);
    return Number.isNaN(ms) ? Date.now() : ms;
  }

  function toast(text) {
    const el = $("toast");
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
  }

  // ---- connection state ---------------------------------------------------------------

  function setConnection(state, text) {
    const pill = $("connection");
    pill.dataset.state = state;
    $("connection-text").textContent = text;
  }

  function showSignIn(message) {
    $("sign-in").hidden = false;
    $("board").hidden = true;
    $("sign-out").hidden = true;
    const err = $("sign-in-error");
    err.hidden = !message;
    err.textContent = message || "";
    setConnection("idle", "Not connected");
    $("token-input").focus();
  }

  function showBoard() {
    $("sign-in").hidden = true;
    $("board").hidden = false;
    $("sign-out").hidden = false;
  }

  function connect() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) { showSignIn(""); return; }
    showBoard();
    clearTimeout(retryTimer);
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    let ws;
    try {
      ws = new WebSocket(url, ["ems.v1", `ems.bearer.${token}`]);
    } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignIn("That token contains characters a token cannot have.");
      return;
    }
    socket = ws;
    setConnection("connecting", "Connecting…");

    ws.addEventListener("open", () => {
      retryDelay = 1000;
      setConnection("open", "Live");
      ws.send(JSON.stringify({ type: "subscribe", topics: TOPICS }));
    });
    ws.addEventListener("message", (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      handleFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (socket !== ws) return;
      socket = null;
      if (event.code === POLICY_VIOLATION) {
        sessionStorage.removeItem(TOKEN_KEY);
        showSignIn(`The server refused the token: ${event.reason || "policy violation"}.`);
        return;
      }
      const delay = Math.min(30000, retryDelay) * (0.5 + Math.random() / 2);
      retryDelay = Math.min(30000, retryDelay * 2);
      setConnection("closed", `Reconnecting in ${Math.ceil(delay / 1000)} s`);
      retryTimer = setTimeout(connect, delay);
    });
  }

  // ---- frames -------------------------------------------------------------------------

  function handleFrame(frame) {
    switch (frame.type) {
      case "message": return handleMessage(frame);
      case "subscribed":
        if (frame.denied && frame.denied.length) toast(`Not allowed: ${frame.denied.join(", ")}`);
        return;
      case "lag": return toast(`Connection too slow: skipped ${frame.dropped} updates`);
      case "error": return toast(`Server: ${frame.detail}`);
      default: return;
    }
  }

  function handleMessage(frame) {
    if (frame.raw || typeof frame.payload !== "object" || frame.payload === null) return;
    const parts = String(frame.topic).split("/");
    if (parts.length < 3 || parts[0] !== "ems") return;
    const id = parts[1];
    const kind = parts.slice(2).join("/");
    if (kind === "status") applyStatus(deviceCard(id), frame.payload);
    else if (kind === "telemetry") applyTelemetry(deviceCard(id), frame.payload);
  }

  // ---- device cards -------------------------------------------------------------------

  function deviceCard(id) {
    let dev = devices.get(id);
    if (dev) return dev;
    const node = $("card-template").content.firstElementChild.cloneNode(true);
    node.dataset.device = id;
    node.querySelector(".device-name").textContent = id;
    dev = { id, node, state: "unknown", lastUpdate: 0, power: [], phases: {}, rows: {} };
    devices.set(id, dev);

    const grid = $("devices");
    const after = [...grid.children].find((el) => el.dataset.device.localeCompare(id) > 0);
    grid.insertBefore(node, after || null);
    $("empty").hidden = true;
    $("device-count").textContent = `${devices.size} device${devices.size === 1 ? "" : "s"}`;
    return dev;
  }

  function role(dev, name) { return dev.node.querySelector(`[data-role="${name}"]`); }

  function applyStatus(dev, status) {
    const state = status.state === "online" ? "online" : status.state === "offline" ? "offline" : "unknown";
    dev.state = state;
    dev.node.dataset.state = state;
    const badge = role(dev, "state");
    badge.dataset.state = state;
    badge.textContent = state;
    if (status.ts !== undefined) touch(dev, parseTs(status.ts));

    const relays = role(dev, "relays");
    relays.replaceChildren();
    if (status.relays && typeof status.relays === "object") {
      for (const phase of PHASES) {
        if (!(phase in status.relays)) continue;
        const chip = document.createElement("span");
        const on = Boolean(status.relays[phase]);
        chip.className = `relay ${on ? "on" : "off"}`;
        chip.textContent = `Relay ${phase} ${on ? "on" : "off"}`;
        relays.append(chip);
      }
    }
    const extra = [];
    if (typeof status.backlog === "number" && status.backlog > 0) extra.push(`backlog ${status.backlog}`);
    if (typeof status.agent === "string") extra.push(status.agent);
    if (state === "offline" && typeof status.reason === "string") extra.push(`reason: ${status.reason}`);
    role(dev, "extra").textContent = extra.join(" · ");
  }

  // Other meters may send kW and Wh/MWh (contract "units"); show everything in W and kWh.
  function normalized(sample) {
    const units = sample.units || {};
    const pf = units.power === "kW" ? 1000 : 1;
    const ef = units.energy === "Wh" ? 0.001 : units.energy === "MWh" ? 1000 : 1;
    if (pf === 1 && ef === 1) return sample;
    const phases = {};
    for (const [name, r] of Object.entries(sample.phases)) {
      phases[name] = {
        ...r,
        power_watt: r.power_watt * pf, power_var: r.power_var * pf, power_va: r.power_va * pf,
        energy_kwh: r.energy_kwh * ef,
      };
    }
    return { ...sample, phases };
  }

  function applyTelemetry(dev, payload) {
    const samples = Array.isArray(payload.samples) ? payload.samples : [payload];
    let newest = null;
    for (const raw of samples) {
      if (!raw || typeof raw.phases !== "object" || raw.phases === null) continue;
      const sample = normalized(raw);
      const ts = parseTs(sample.ts);
      let total = 0;
      for (const reading of Object.values(sample.phases)) {
        if (reading && typeof reading.power_watt === "number") total += reading.power_watt;
      }
      dev.power.push([ts, total]);
      if (!newest || ts >= newest.ts) newest = { ts, sample, total };
    }
    if (!newest) return;
    dev.power.sort((a, b) => a[0] - b[0]);
    if (dev.power.length > SPARK_POINTS) dev.power.splice(0, dev.power.length - SPARK_POINTS);

    const [value, unit] = powerParts(newest.total);
    role(dev, "power-total").textContent = value;
    role(dev, "power-unit").textContent = unit;
    for (const phase of PHASES) {
      const reading = newest.sample.phases[phase];
      if (reading) renderPhase(dev, phase, reading);
    }
    touch(dev, newest.ts);
    drawSpark(dev);
  }

  function renderPhase(dev, phase, r) {
    let row = dev.rows[phase];
    if (!row) {
      row = document.createElement("tr");
      row.dataset.phase = phase;
      const tag = document.createElement("span");
      tag.className = `phase-tag phase-${phase}`;
      tag.textContent = phase;
      const first = document.createElement("td");
      first.append(tag);
      row.append(first);
      for (const field of ["voltage_rms", "current_rms", "power_watt", "power_factor", "thd", "energy_kwh"]) {
        const cell = document.createElement("td");
        cell.dataset.field = field;
        row.append(cell);
      }
      dev.rows[phase] = row;
      const body = dev.node.querySelector("tbody");
      const after = [...body.children].find((el) => el.dataset.phase > phase);
      body.insertBefore(row, after || null);
    }
    const cell = (field) => row.querySelector(`[data-field="${field}"]`);
    cell("voltage_rms").textContent = fmt(r.voltage_rms, 1);
    cell("current_rms").textContent = fmt(r.current_rms, 2);
    cell("power_watt").textContent = fmt(r.power_watt, 0);
    cell("power_factor").textContent = fmt(r.power_factor, 3);
    cell("thd").textContent = `${fmt(r.voltage_thd, 1)} / ${fmt(r.current_thd, 1)}`;
    cell("energy_kwh").textContent = fmt(r.energy_kwh, 3);
  }

  function touch(dev, ms) {
    dev.lastUpdate = Math.max(dev.lastUpdate, ms);
    renderAge(dev);
  }

  function renderAge(dev) {
    if (!dev.lastUpdate) return;
    const el = role(dev, "updated");
    el.textContent = `updated ${ago(dev.lastUpdate)}`;
    el.title = new Date(dev.lastUpdate).toLocaleString();
  }

  function drawSpark(dev) {
    const svg = role(dev, "spark");
    const pts = dev.power;
    if (pts.length < 2) return;
    const W = 200, H = 48, pad = 3;
    let lo = Infinity, hi = -Infinity;
    for (const [, w] of pts) { lo = Math.min(lo, w); hi = Math.max(hi, w); }
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    const t0 = pts[0][0], t1 = pts[pts.length - 1][0];
    const span = Math.max(1, t1 - t0);
    const xy = pts.map(([t, w]) => [
      ((t - t0) / span) * W,
      H - pad - ((w - lo) / (hi - lo)) * (H - 2 * pad),
    ]);
    const line = xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
    svg.querySelector("polyline").setAttribute("points", line);
    svg.querySelector("path").setAttribute("d", `M0,${H} L${line.replaceAll(" ", " L")} L${W},${H} Z`);
    svg.setAttribute("aria-label", `power trend, ${pts.length} samples, ${fmt(lo, 0)}–${fmt(hi, 0)} W`);
  }

  setInterval(() => {
    for (const dev of devices.values()) {
      renderAge(dev);
      // No telemetry for two minutes: dim the numbers so nobody reads them as current.
      dev.node.classList.toggle("stale", dev.lastUpdate > 0 && Date.now() - dev.lastUpdate > 120000);
    }
  }, 1000);

  // ---- wiring -------------------------------------------------------------------------

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    $("token-input").value = "";
    sessionStorage.setItem(TOKEN_KEY, token);
    connect();
  });

  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    const ws = socket;
    socket = null;
    if (ws) ws.close(1000, "signed out");
    clearTimeout(retryTimer);
    devices.clear();
    $("devices").replaceChildren();
    $("empty").hidden = false;
    $("device-count").textContent = "";
    showSignIn("");
  });

  connect();
})();
