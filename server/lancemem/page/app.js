// The lancemem memory browser. Talks to this server's /api only; renders every
// stored value with textContent (never as HTML). The credential, when the server
// asks for one, lives in sessionStorage and travels as an Authorization header.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "lancemem-token";
  const KEYS = ["user_id", "agent_id", "run_id"];
  const GROUPS = { user_id: "Users", agent_id: "Agents", run_id: "Runs" };
  const PAGE_SIZE = 20;
  const SVG = "http://www.w3.org/2000/svg";
  const state = { session: null, scope: {}, cursors: [null], page: 0, query: null, open: null };

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // ---- talking to the server ------------------------------------------------

  async function api(method, path, params, body) {
    const url = new URL(path, location.origin);
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
    }
    const headers = {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method, headers, credentials: "omit", cache: "no-store", redirect: "error" };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      headers["X-Lancemem-Page"] = "1";
      init.body = JSON.stringify(body || {});
    }
    const response = await fetch(url, init);
    if (response.ok) return response;
    let code = "HTTP_" + response.status;
    let message = response.statusText;
    try {
      const data = await response.json();
      code = data.error.code;
      message = data.error.message;
    } catch (ignored) { /* not our JSON error: keep the status */ }
    throw new ApiError(response.status, code, message);
  }

  async function getJson(path, params) {
    return (await api("GET", path, params)).json();
  }

  function scopeParams() {
    const params = {};
    for (const key of KEYS) if (state.scope[key]) params[key] = state.scope[key];
    return params;
  }

  function hasScope() {
    return KEYS.some((key) => state.scope[key]);
  }

  // ---- small DOM helpers ----------------------------------------------------

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function showError(error) {
    const box = $("error");
    if (!error) {
      box.hidden = true;
      box.textContent = "";
      return;
    }
    box.textContent = error.code ? `${error.code}: ${error.message}` : String(error.message || error);
    box.hidden = false;
    if (error.status === 401) showLogin();
  }

  // Runs an action, showing its error instead of losing it.
  function guarded(action) {
    return async (event) => {
      if (event && event.preventDefault) event.preventDefault();
      try {
        await action(event);
      } catch (error) {
        showError(error);
      }
    };
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  // ---- login ----------------------------------------------------------------

  function showLogin() {
    $("app").hidden = true;
    $("login").hidden = false;
    $("logout").hidden = true;
    $("who").textContent = "";
    $("token").focus();
  }

  async function logIn() {
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    try {
      state.session = await getJson("/api/session");
    } catch (error) {
      sessionStorage.removeItem(TOKEN_KEY);
      throw error;
    }
    showError(null);
    await enter();
  }

  function logOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    state.session = null;
    showError(null);
    showLogin();
  }

  // ---- start ----------------------------------------------------------------

  async function enter() {
    const session = state.session;
    $("login").hidden = true;
    $("app").hidden = false;
    const who = session.principal;
    $("who").textContent = who
      ? `${who.label || who.name}${who.read_only ? " (read-only)" : ""}`
      : session.auth === "none" ? "no authentication (this machine)" : "";
    $("logout").hidden = session.auth === "none";
    const link = new URLSearchParams(location.search);
    const bound = who ? who.pins : {};
    for (const key of KEYS) {
      state.scope[key] = link.get(key) || bound[key] || session.pinned[key]
        || session.defaults[key] || null;
    }
    if (link.get("mode")) $("mode").value = link.get("mode");
    $("q").value = link.get("q") || "";
    await loadScopes();
    if ($("q").value) await search();
    else await listPage(0);
  }

  // ---- scopes ---------------------------------------------------------------

  async function loadScopes() {
    const scopes = await getJson("/api/scopes");
    const groups = $("scope-groups");
    groups.replaceChildren();
    for (const key of KEYS) {
      const group = el("div", null, "scope-group");
      group.append(el("h3", GROUPS[key]));
      const items = el("ul");
      if (!scopes[key].length) items.append(el("li", "none", "hint"));
      for (const entry of scopes[key]) {
        const button = el("button", null, "scope");
        button.type = "button";
        button.dataset.key = key;
        button.dataset.id = entry.id;
        button.append(el("span", entry.id, "scope-id"), el("span", entry.count, "count"));
        button.setAttribute("aria-pressed", String(state.scope[key] === entry.id));
        button.addEventListener("click", guarded(() => pickScope(key, entry.id)));
        const item = el("li");
        item.append(button);
        items.append(item);
      }
      group.append(items);
      groups.append(group);
    }
    showScope();
  }

  function showScope() {
    const shown = KEYS.filter((key) => state.scope[key]).map((key) => `${key}=${state.scope[key]}`);
    $("scope-shown").textContent = shown.length ? "Scope: " + shown.join(", ") : "No scope picked";
    for (const button of document.querySelectorAll("button.scope")) {
      button.setAttribute("aria-pressed",
        String(state.scope[button.dataset.key] === button.dataset.id));
    }
  }

  // An id the credential or the server pins: the API would apply it anyway.
  function fixed(key) {
    const who = state.session.principal;
    return Boolean((who && who.pins[key]) || state.session.pinned[key]);
  }

  async function pickScope(key, id) {
    if (fixed(key) && state.scope[key] === id) return;
    state.scope[key] = state.scope[key] === id ? null : id;
    showScope();
    closeDetail();
    $("q").value = "";
    await listPage(0);
  }

  function updateUrl() {
    const params = new URLSearchParams(scopeParams());
    if (state.query) {
      params.set("q", state.query);
      if ($("mode").value !== "hybrid") params.set("mode", $("mode").value);
    }
    const query = params.toString();
    history.replaceState(null, "", query ? "?" + query : location.pathname);
  }

  // ---- list and search ------------------------------------------------------

  async function listPage(page) {
    state.query = null;
    updateUrl();
    if (page === 0) state.cursors = [null];
    if (!hasScope()) {
      $("memories").replaceChildren();
      setStatus("Pick a scope to see its memories.");
      setPager(false, false, "");
      $("relations").hidden = true;
      return;
    }
    const data = await getJson("/api/memories",
      { ...scopeParams(), cursor: state.cursors[page], limit: PAGE_SIZE });
    state.page = page;
    state.cursors[page + 1] = data.next_cursor;
    renderMemories(data.results);
    const pages = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
    setStatus(`${data.total} ${data.total === 1 ? "memory" : "memories"}, newest first`);
    setPager(page > 0, data.next_cursor !== null, `page ${page + 1} of ${pages}`);
    showError(null);
    await loadRelations();
  }

  async function search() {
    const query = $("q").value.trim();
    if (!query) return listPage(0);
    state.query = query;
    updateUrl();
    const mode = $("mode").value;
    const data = await getJson("/api/search", {
      ...scopeParams(), q: query, mode, limit: $("limit").value, threshold: $("threshold").value,
    });
    renderMemories(data.results);
    setStatus(`${data.results.length} results for “${query}” (${mode})`);
    setPager(false, false, "");
    showError(null);
    await loadRelations();
  }

  function setPager(newer, older, info) {
    $("newer").disabled = !newer;
    $("older").disabled = !older;
    $("page-info").textContent = info;
  }

  function renderMemories(items) {
    const list = $("memories");
    list.replaceChildren();
    for (const item of items) {
      const row = el("li", null, "memory");
      row.dataset.id = item.id;
      const open = el("button", item.memory, "memory-text");
      open.type = "button";
      open.addEventListener("click", guarded(() => openMemory(item.id)));
      row.append(open);
      const meta = el("div", null, "memory-meta");
      if (item.score !== undefined) meta.append(el("span", item.score.toFixed(3), "score"));
      meta.append(el("span", item.created_at, "when"));
      for (const key of [...KEYS, "actor_id"]) {
        if (item[key]) meta.append(el("span", `${key}=${item[key]}`, "tag"));
      }
      row.append(meta);
      list.append(row);
    }
    if (!items.length) list.append(el("li", "(no memories)", "hint"));
  }

  function refresh() {
    return state.query ? search() : listPage(state.page);
  }

  // ---- one memory -----------------------------------------------------------

  async function openMemory(id) {
    const item = await getJson(`/api/memories/${encodeURIComponent(id)}`, scopeParams());
    const history = await getJson(`/api/memories/${encodeURIComponent(id)}/history`,
      scopeParams());
    state.open = item;
    $("detail").hidden = false;
    $("detail-text").textContent = item.memory;
    const fields = [["id", item.id], ...KEYS.concat(["actor_id", "role"]).map((k) => [k, item[k]]),
      ["created_at", item.created_at], ["updated_at", item.updated_at],
      ["expiration_date", item.expiration_date]];
    fillTable($("detail-fields"), fields.filter(([, value]) => value !== undefined));
    fillTable($("detail-metadata"), Object.entries(item.metadata || {})
      .map(([key, value]) => [key, JSON.stringify(value)]));
    $("edit-text").value = item.memory;
    $("edit-metadata").value = JSON.stringify(item.metadata || {}, null, 2);
    const readOnly = Boolean(state.session.principal && state.session.principal.read_only);
    $("edit-form").hidden = readOnly;
    $("read-only").hidden = !readOnly;
    renderTimeline(history.results);
    showError(null);
  }

  function fillTable(table, rows) {
    table.replaceChildren();
    for (const [key, value] of rows) {
      const row = el("tr");
      row.append(el("th", key), el("td", value));
      table.append(row);
    }
    if (!rows.length) table.append(el("tr", "(none)", "hint"));
  }

  function renderTimeline(entries) {
    const timeline = $("timeline");
    timeline.replaceChildren();
    for (const entry of entries) {
      const row = el("li", null, "event event-" + entry.event.toLowerCase());
      row.append(el("span", entry.event, "event-name"), el("time", entry.created_at));
      const change = entry.event === "ADD" ? `+ ${entry.new_memory}`
        : entry.event === "DELETE" ? `− ${entry.old_memory}`
          : `${entry.old_memory} → ${entry.new_memory}`;
      row.append(el("div", change, "change"));
      const before = JSON.stringify(entry.old_metadata ?? null);
      const after = JSON.stringify(entry.new_metadata ?? null);
      if (entry.event === "UPDATE" && before !== after) {
        row.append(el("div", `metadata ${before} → ${after}`, "change metadata-change"));
      }
      if (entry.principal) row.append(el("div", `by ${entry.principal}`, "hint"));
      timeline.append(row);
    }
  }

  function closeDetail() {
    state.open = null;
    $("detail").hidden = true;
  }

  async function save() {
    const item = state.open;
    let metadata;
    try {
      metadata = JSON.parse($("edit-metadata").value || "{}");
    } catch (error) {
      throw new ApiError(0, "PAGE_JSON", "the metadata is not valid JSON: " + error.message);
    }
    const change = {};
    const text = $("edit-text").value;
    if (text !== item.memory) change.text = text;
    if (JSON.stringify(metadata) !== JSON.stringify(item.metadata || {})) change.metadata = metadata;
    if (!Object.keys(change).length) {
      setStatus("Nothing changed.");
      return;
    }
    await api("PATCH", `/api/memories/${encodeURIComponent(item.id)}`, scopeParams(), change);
    await openMemory(item.id);
    await refresh();
    setStatus("Saved.");
  }

  function confirmed(text) {
    const dialog = $("confirm");
    $("confirm-text").textContent = text;
    return new Promise((resolve) => {
      const done = (answer) => () => {
        $("confirm-ok").onclick = null;
        $("confirm-cancel").onclick = null;
        dialog.close();
        resolve(answer);
      };
      $("confirm-ok").onclick = done(true);
      $("confirm-cancel").onclick = done(false);
      dialog.showModal();
    });
  }

  async function remove() {
    const item = state.open;
    if (!(await confirmed(`Delete this memory? “${item.memory}” (its history is kept)`))) return;
    await api("DELETE", `/api/memories/${encodeURIComponent(item.id)}`, scopeParams());
    closeDetail();
    await loadScopes();
    await refresh();
    setStatus("Deleted.");
  }

  // ---- relations graph ------------------------------------------------------

  async function loadRelations() {
    const data = await getJson("/api/relations", scopeParams());
    const section = $("relations");
    section.hidden = !data.results.length;
    if (data.results.length) drawGraph($("graph"), data.results);
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function drawGraph(graph, relations) {
    graph.replaceChildren();
    const names = [...new Set(relations.flatMap((r) => [r.source, r.target]))].slice(0, 40);
    const width = 640;
    const height = 420;
    const radius = Math.min(width, height) / 2 - 60;
    const at = new Map(names.map((name, i) => {
      const angle = (2 * Math.PI * i) / names.length - Math.PI / 2;
      return [name, [width / 2 + radius * Math.cos(angle), height / 2 + radius * Math.sin(angle)]];
    }));
    const defs = svg("defs", {});
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 22, refY: 5,
      markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" }));
    defs.append(marker);
    graph.append(defs);
    for (const relation of relations) {
      const [from, to] = [at.get(relation.source), at.get(relation.target)];
      if (!from || !to) continue;
      const edge = svg("g", { class: "edge" });
      edge.append(svg("line", { x1: from[0], y1: from[1], x2: to[0], y2: to[1],
        "marker-end": "url(#arrow)" }));
      edge.append(svg("text", { x: (from[0] + to[0]) / 2, y: (from[1] + to[1]) / 2 - 4,
        class: "edge-label" }, relation.relationship));
      graph.append(edge);
    }
    for (const [name, [x, y]] of at) {
      const node = svg("g", { class: "node" });
      node.append(svg("circle", { cx: x, cy: y, r: 14 }));
      node.append(svg("text", { x, y: y + 30, class: "node-label" }, name));
      graph.append(node);
    }
  }

  // ---- export ---------------------------------------------------------------

  async function exportScope() {
    if (!hasScope()) throw new ApiError(0, "PAGE_SCOPE", "pick a scope to export first.");
    const response = await api("GET", "/api/export", scopeParams());
    const blob = await response.blob();
    const name = KEYS.filter((k) => state.scope[k]).map((k) => state.scope[k]).join("-");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `lancemem-${name.replace(/[^A-Za-z0-9_.-]+/g, "_")}.jsonl`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  // ---- wiring ---------------------------------------------------------------

  function wire() {
    $("login-form").addEventListener("submit", guarded(logIn));
    $("logout").addEventListener("click", logOut);
    $("search-form").addEventListener("submit", guarded(search));
    $("clear").addEventListener("click", guarded(() => {
      $("q").value = "";
      return listPage(0);
    }));
    $("newer").addEventListener("click", guarded(() => listPage(state.page - 1)));
    $("older").addEventListener("click", guarded(() => listPage(state.page + 1)));
    $("export").addEventListener("click", guarded(exportScope));
    $("close-detail").addEventListener("click", closeDetail);
    $("edit-form").addEventListener("submit", guarded(save));
    $("delete").addEventListener("click", guarded(remove));
  }

  async function boot() {
    wire();
    try {
      state.session = await getJson("/api/session");
    } catch (error) {
      if (error.status === 401) {
        if (sessionStorage.getItem(TOKEN_KEY)) showError(error);
        else showLogin();
        return;
      }
      showError(error);
      return;
    }
    await enter();
  }

  boot().catch(showError);
})();
