// Keeps the dashboard and station pages live over /ws/live/ (frames in README:
// "Live updates"). The server renders every page complete; this only applies frames,
// says plainly when the connection drops, and reconnects with back-off.
(function () {
  "use strict";
  const status = document.getElementById("live-status");
  if (!status) return;

  const DASH = "\u2013";
  const formats = {
    kw: (v) => (v == null ? DASH : (v / 1000).toFixed(1) + " kW"),
    kwh: (v) => (v == null ? DASH : Number(v).toFixed(2) + " kWh"),
    kwh1: (v) => (v == null ? DASH : Number(v).toFixed(1) + " kWh"),
    amps: (v) => (v == null ? DASH : Number(v).toFixed(1) + " A"),
  };

  function say(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function applyStatus(frame) {
    const card = document.getElementById("station-" + frame.station);
    if (!card) return;
    for (const el of card.querySelectorAll("[data-field]")) {
      const name = el.dataset.field;
      if (name === "is_online" && "is_online" in frame) {
        const was = el.classList.contains("online");
        el.textContent = frame.is_online ? "online" : "offline";
        el.className = "badge " + (frame.is_online ? "online" : "offline");
        const since = card.querySelector('[data-field="since"]');
        if (since && was !== frame.is_online) since.textContent = el.textContent + " since just now";
      } else if (name in frame && name !== "since") {
        const format = formats[el.dataset.format];
        el.textContent = format ? format(frame[name]) : frame[name] == null ? DASH : frame[name];
      }
    }
    // Parts shown only while a field says something (the override in force).
    for (const el of card.querySelectorAll("[data-shown-by]")) {
      if (el.dataset.shownBy in frame) el.hidden = !frame[el.dataset.shownBy];
    }
    if (frame.activity) {
      card.className = card.className.replace(/\bactivity-\S+/, "activity-" + frame.activity);
    }
    // A new or finished session: fetch its card and owner, which frames do not carry.
    if ("session_id" in frame && String(frame.session_id ?? "") !== card.dataset.session) {
      card.dataset.session = String(frame.session_id ?? "");
      const part = document.getElementById("station-" + frame.station + "-session");
      if (part && window.htmx) {
        htmx.ajax("GET", "/stations/" + frame.station + "/session/", { target: part, swap: "outerHTML" });
      }
    }
    refreshCharts(frame.station);
  }

  // A control's reply may be swapped in after its outcome's frame arrived: re-apply.
  const commands = new Map();
  document.body.addEventListener("htmx:afterSwap", function () {
    for (const frame of commands.values()) applyCommand(frame);
  });

  function applyCommand(frame) {
    commands.set(frame.id, frame);
    for (const el of document.querySelectorAll('[data-command="' + frame.id + '"]')) {
      el.className = el.className.replace(/\bstatus-\S+/, "status-" + frame.status);
      const s = el.querySelector(".command-status");
      const r = el.querySelector(".command-reason");
      if (s) s.textContent = frame.status;
      if (r) r.textContent = frame.reason || "";
    }
  }

  // The station page redraws its charts after new data, at most once a minute.
  let chartsAt = 0;
  function refreshCharts(station) {
    const charts = document.getElementById("charts");
    if (!charts || !window.htmx || Date.now() - chartsAt < 60000) return;
    if (!document.getElementById("station-" + station)) return;
    chartsAt = Date.now();
    htmx.ajax("GET", charts.dataset.refresh, { target: charts, swap: "innerHTML" });
  }

  // Frames missed while disconnected: fetch the cards afresh once back.
  function refreshCards() {
    const cards = document.getElementById("stations");
    if (cards && window.htmx && !document.getElementById("charts")) {
      // The same page of the same site as shown.
      const query = new URLSearchParams(location.search);
      query.set("part", "cards");
      htmx.ajax("GET", "/?" + query.toString(), { target: cards, swap: "outerHTML" });
    }
  }

  let delay = 1000;
  let opened = false;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + status.dataset.socket);
    socket.onopen = function () {
      if (opened) refreshCards();
      opened = true;
      delay = 1000;
      say("live", "Live: updates arrive as they happen.");
    };
    socket.onmessage = function (event) {
      const frame = JSON.parse(event.data);
      if (frame.type === "status") applyStatus(frame);
      else if (frame.type === "command") applyCommand(frame);
    };
    socket.onclose = function (event) {
      // The server ended the socket because the login ended or the role changed
      // (chargers/socket_sessions.py): reloading shows the login page or the
      // pages of the new role; reconnecting would be refused, again and again.
      if (event.code === 4401 || event.code === 4403) {
        say("down", event.code === 4401 ? "Logged out: reloading the page\u2026" : "Your role changed: reloading\u2026");
        location.reload();
        return;
      }
      const seconds = Math.round(delay / 1000);
      say("down", "Live connection lost: what you see may be out of date. Reconnecting in " + seconds + " s\u2026");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000) * (0.8 + Math.random() * 0.4);
    };
  }
  connect();

  // Running sessions' durations count on in the page itself.
  setInterval(function () {
    for (const el of document.querySelectorAll("[data-started]")) {
      const minutes = Math.max(0, Math.floor((Date.now() - Date.parse(el.dataset.started)) / 60000));
      el.textContent = minutes >= 60
        ? Math.floor(minutes / 60) + " h " + String(minutes % 60).padStart(2, "0") + " min"
        : minutes + " min";
    }
  }, 30000);
})();
