// The live monitor page: state from /api/monitor/state, then every monitor event from the SSE stream
// /api/monitor/stream (read with fetch so the bearer token goes in a header, not the URL).
// Every store is keyed (alert_id with its version, command_id with its status order, message_id, ...),
// so an event seen twice (the topic is at-least-once, the state and the stream overlap) counts once.
// The after-sales task board reads /api/tasks and /api/staff instead (the rows the dataflow projects):
// again on any task_* or staff_status event (at most once a second) and every 30 s; the customer
// profiles (customers.js) the same way, on customer_updated events.
"use strict";

const TOKEN_KEY = "worktool.console.token";
const ACTION_ROLES = new Set(["admin", "supervisor"]);
const WINDOW_MS = 3600 * 1000;
const OPEN = new Set(["open", "escalated"]);
const COMMAND_ORDER = { pending: 0, sent: 1, timeout: 2, unknown: 2, completed: 3, failed: 3 };
const COMMAND_NAMES = {
  pending: "待发送", sent: "已发送", completed: "已完成", failed: "失败", timeout: "超时", unknown: "未知",
};
const SESSION_NAMES = { auto: "AI 自动", staff: "人工处理", handover: "转人工" };
const ROBOT_NAMES = { online: "在线", offline: "离线", unknown: "未知" };
const HEALTH_NAMES = { healthy: "健康", warning: "警告", critical: "严重" };
const INTERVENTION_NAMES = {
  complaint: "用户投诉", user_negative_after_staff: "售后介入后用户仍不满", user_waiting_too_long: "用户等待过久",
  staff_low_reply_quality: "售后回复质量低", user_low_satisfaction: "用户满意度低",
};
const STATUS_NAMES = { open: "未处理", escalated: "已升级", cancelled: "已取消", resolved: "已解决" };

const store = {
  sessions: new Map(), alerts: new Map(), interventions: new Map(), commands: new Map(),
  robots: new Map(), classified: new Map(), aiCalls: new Map(), replies: new Map(),
};
let names = { levels: {}, alert_types: {}, cancel_reasons: {} };
let me = null; // {username, role}
let stream = null; // AbortController of the open stream
let stateLoaded = false;
let pending = []; // events that arrived before the state
let openAlertId = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function time(v) { return v == null ? null : typeof v === "number" ? v : Date.parse(v); }
function fmtTime(ms) { return ms == null ? "–" : new Date(ms).toLocaleString("zh-CN", { hour12: false }); }
function fmtAge(ms) {
  const s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
  if (s < 60) return `${s} 秒`;
  if (s < 3600) return `${Math.floor(s / 60)} 分钟`;
  if (s < 86400) return `${Math.floor(s / 3600)} 小时 ${Math.floor((s % 3600) / 60)} 分`;
  return `${Math.floor(s / 86400)} 天`;
}
function alertTypeName(t) { return names.alert_types[t] || t; }

// -- authentication ----------------------------------------------------------------------------

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  return fetch(path, { ...options, headers });
}

function showLogin(message) {
  stopStream();
  $("login").hidden = false;
  $("logout").hidden = true;
  $("login-error").textContent = message || "";
  setConn("idle", "未登录");
}

async function whoAmI() {
  const r = await api("/api/auth/me");
  if (r.ok) return r.json();
  // No account service (or a pasted WORKTOOL_API_TOKEN): the API token may act on alerts, as may a
  // loopback client of an API without a token.
  return { username: token() ? "API token" : "本机", role: "admin" };
}

async function login(event) {
  event.preventDefault();
  const body = { username: $("login-username").value.trim(), password: $("login-password").value };
  const r = await fetch("/api/auth/login", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!r.ok) {
    $("login-error").textContent = r.status === 404 ? "此服务未启用账号登录，请粘贴 API token" : "用户名或密码错误";
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, (await r.json()).access_token);
  start();
}

function useToken() {
  const t = $("login-token").value.trim();
  if (!t) { $("login-error").textContent = "请粘贴 token"; return; }
  sessionStorage.setItem(TOKEN_KEY, t);
  start();
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  $("who").textContent = "";
  clearBoard();
  clearCustomers(); // customers.js
  showLogin();
}

// -- state and stream --------------------------------------------------------------------------

function setConn(state, text) {
  const c = $("conn");
  c.dataset.state = state;
  c.textContent = text;
}

async function start() {
  stopStream();
  const probe = await api("/api/monitor/state", { method: "GET" }).catch(() => null);
  if (probe && (probe.status === 401 || probe.status === 403)) {
    showLogin(token() ? "token 无效或已过期，请重新登录" : "");
    return;
  }
  $("login").hidden = true;
  me = await whoAmI().catch(() => null);
  $("who").textContent = me ? `${me.username}（${me.role}）` : "";
  $("logout").hidden = !token();
  connect();
}

function stopStream() {
  if (stream) stream.abort();
  stream = null;
}

function clearStore() {
  for (const m of Object.values(store)) m.clear();
}

async function loadState() {
  const r = await api("/api/monitor/state");
  if (!r.ok) throw new Error(`state: HTTP ${r.status}`);
  const s = await r.json();
  names = s.names || names;
  clearStore();
  for (const x of s.sessions) putSession(x.session_id, { ...x, last_at: time(x.last_message_at) });
  for (const a of s.alerts) putAlert(a);
  for (const i of s.interventions) store.interventions.set(i.message_id, { ...i, at: time(i.at) });
  for (const c of s.commands) putCommand(c.command_id, { ...c, at: time(c.at) });
  for (const r2 of s.robots) putRobot(r2.robot_id, r2);
  for (const m of s.classified) store.classified.set(m.message_id, { ...m, at: time(m.at) });
  for (const c of s.ai_calls) store.aiCalls.set(c.call_id, { ...c, at: time(c.at) });
}

async function onReady() {
  await loadState();
  stateLoaded = true;
  for (const ev of pending) apply(ev);
  pending = [];
  setConn("live", "实时");
  render();
  loadBoard();
  customersReloader.run(); // customers.js
}

function onEvent(ev) {
  if (isBoardEvent(ev)) scheduleBoard();
  if (ev.event === "customer_updated") customersReloader.schedule(); // customers.js
  if (!stateLoaded) { pending.push(ev); return; }
  apply(ev);
  scheduleRender();
}

function parseSse(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // a keep-alive comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { event, data: data.join("\n") } : null;
}

async function connect() {
  stopStream();
  const ctrl = new AbortController();
  stream = ctrl;
  stateLoaded = false;
  pending = [];
  setConn("connecting", "连接中");
  let retry = 3000;
  try {
    const r = await api("/api/monitor/stream", { signal: ctrl.signal, headers: { Accept: "text/event-stream" } });
    if (r.status === 401 || r.status === 403) { showLogin("token 无效或已过期，请重新登录"); return; }
    if (!r.ok) throw new Error(`stream: HTTP ${r.status}`);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const message = parseSse(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (!message) continue;
        if (message.event === "ready") await onReady();
        else if (message.event === "message") onEvent(JSON.parse(message.data));
        else if (message.event === "dropped") retry = 0; // we fell behind: reload everything now
      }
    }
  } catch (e) {
    if (ctrl.signal.aborted) return;
    console.warn("monitor stream:", e);
  }
  if (stream !== ctrl) return;
  setConn("down", "已断开，重连中");
  setTimeout(() => { if (stream === ctrl) connect(); }, retry);
}

// -- applying events ---------------------------------------------------------------------------

function putSession(id, fields) {
  if (!id) return;
  const cur = store.sessions.get(id) || { session_id: id, status: "auto", ai_paused: false };
  const next = { ...cur };
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) next[k] = v;
  next.last_at = Math.max(cur.last_at || 0, fields.last_at || 0) || null;
  store.sessions.set(id, next);
}

function putAlert(a) {
  if (!a || !a.alert_id) return;
  const cur = store.alerts.get(a.alert_id);
  if (cur && (cur.version || 0) > (a.version || 0)) return; // an older transition, re-delivered
  store.alerts.set(a.alert_id, a);
}

function putCommand(id, fields) {
  const cur = store.commands.get(id);
  if (cur && fields.status && COMMAND_ORDER[fields.status] < COMMAND_ORDER[cur.status]) {
    fields = { ...fields, status: cur.status }; // a status never moves back
  }
  const next = { ...(cur || { command_id: id }), ...fields };
  store.commands.set(id, next);
  if (next.cause_event === "reply_scheduled" && next.cause_id) {
    store.replies.set(next.cause_id, { ...(store.replies.get(next.cause_id) || {}), command_id: id });
  }
}

function putRobot(id, fields) {
  if (!id) return;
  store.robots.set(id, { ...(store.robots.get(id) || { robot_id: id }), ...fields });
}

function apply(ev) {
  const d = ev.data || {};
  const at = time(ev.event_time);
  switch (ev.event) {
    case "message_classified":
      if (!d.is_echo) {
        store.classified.set(d.message_id, {
          at, message_type: d.message_type, decided_by: d.decided_by, sender_type: d.sender_type,
        });
      }
      putSession(ev.session_id, { group_name: d.group_name || null, last_at: at });
      break;
    case "session_state":
      putSession(ev.session_id, { status: d.status, ai_paused: d.ai_paused });
      break;
    case "intervention_needed":
      store.interventions.set(d.message_id, {
        message_id: d.message_id, session_id: ev.session_id, reason: d.reason, user_name: d.user_name, at,
      });
      break;
    case "alert_raised":
    case "alert_escalated":
    case "alert_retriggered":
    case "alert_cancelled":
      putAlert(d.alert);
      break;
    case "reply_scheduled":
      store.replies.set(d.message_id, { ...(store.replies.get(d.message_id) || {}), at });
      break;
    case "reply_withdrawn": // staff stepped in before it was sent
      store.replies.set(d.message_id, { ...(store.replies.get(d.message_id) || {}), withdrawn: true });
      break;
    case "command_created":
      putCommand(d.command_id, {
        status: "pending", channel: d.channel, robot_id: d.robot_id, target: d.target,
        cause_event: d.cause_event, cause_id: d.cause_id, at,
      });
      break;
    case "command_sent": putCommand(d.command_id, { status: "sent" }); break;
    case "command_result": putCommand(d.command_id, { status: d.status }); break;
    case "command_timeout": putCommand(d.command_id, { status: "timeout" }); break;
    case "robot_status":
      putRobot(ev.robot_id, { status: d.status, last_status_at: ev.event_time });
      break;
    case "robot_health":
      putRobot(ev.robot_id, {
        health_score: Math.round(d.score), health_status: d.band, status: d.online ? "online" : "offline",
        send_failure_count: d.send_failures, consecutive_failure_count: d.consecutive_failures,
      });
      break;
    case "ai_call":
      store.aiCalls.set(d.call_id, {
        at, status: d.status, latency_ms: d.latency_ms, model_id: d.model_id, provider: d.provider,
        error_message: d.error_message,
      });
      break;
    default:
      break;
  }
}

// -- rendering ---------------------------------------------------------------------------------

let renderTimer = null;
function scheduleRender() {
  if (renderTimer == null) renderTimer = setTimeout(() => { renderTimer = null; render(); }, 100);
}

function replace(tbody, rows, emptyText, cols) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colSpan: cols }, emptyText))]));
}

function openAlerts() {
  return [...store.alerts.values()]
    .filter((a) => OPEN.has(a.status))
    .sort((a, b) => time(b.raised_at) - time(a.raised_at));
}

function renderBusiness(now) {
  const sessions = [...store.sessions.values()];
  const staffHeld = (s) => s.status === "staff" || s.status === "handover" || s.ai_paused;
  $("count-active-sessions").textContent = sessions.filter(
    (s) => staffHeld(s) || (s.last_at && now - s.last_at <= WINDOW_MS)).length;
  $("count-staff-sessions").textContent = sessions.filter(staffHeld).length;

  const alerts = openAlerts();
  $("count-open-alerts").textContent = alerts.length;
  for (const level of [1, 2, 3, 4]) $(`alerts-level-${level}`).textContent = alerts.filter((a) => a.level === level).length;
  replace($("alert-list"), alerts.map((a) => {
    const row = el("tr", { class: `alert level-${a.level}`, "data-alert-id": a.alert_id, "data-level": String(a.level) },
      el("td", {}, el("span", { class: `badge lv${a.level}` }, `${a.level}级 ${names.levels[a.level] || ""}`)),
      el("td", {}, alertTypeName(a.alert_type)),
      el("td", {}, [a.group_name, a.user_name].filter(Boolean).join(" · ") || a.robot_id || "–"),
      el("td", { class: "content" }, a.message_content || ""),
      el("td", { class: "age" }, fmtAge(time(a.raised_at))),
      el("td", {}, STATUS_NAMES[a.status] || a.status));
    row.addEventListener("click", () => showAlert(a.alert_id));
    return row;
  }), "暂无未关闭告警", 6);

  const interventions = [...store.interventions.values()].sort((a, b) => b.at - a.at);
  $("count-interventions").textContent = interventions.filter((i) => now - i.at <= WINDOW_MS).length;
  const feed = interventions.slice(0, 12).map((i) => el("li", {},
    el("span", { class: "muted" }, `${fmtTime(i.at)} `), `${i.user_name || i.session_id || ""}：${INTERVENTION_NAMES[i.reason] || i.reason || ""}`));
  $("intervention-list").replaceChildren(...(feed.length ? feed : [el("li", { class: "empty" }, "暂无")]));

  const replyCommands = [...store.commands.values()].filter((c) => c.cause_event === "reply_scheduled");
  $("count-replies-scheduled").textContent = [...store.replies.values()].filter((r) => !r.withdrawn).length;
  $("count-replies-sent").textContent = replyCommands.filter((c) => c.status === "sent" || c.status === "completed").length;

  const byStatus = {};
  for (const c of store.commands.values()) byStatus[c.status] = (byStatus[c.status] || 0) + 1;
  $("command-status").replaceChildren(...Object.keys(COMMAND_NAMES).map((s) =>
    el("span", { class: `chip cmd-${s}` }, `${COMMAND_NAMES[s]} `, el("b", { id: `commands-${s}` }, String(byStatus[s] || 0)))));

  const robots = [...store.robots.values()].sort((a, b) => a.robot_id.localeCompare(b.robot_id));
  replace($("robot-list"), robots.map((r) => el("tr", { "data-robot-id": r.robot_id, class: `robot ${r.status || "unknown"}` },
    el("td", {}, r.name ? `${r.name}（${r.robot_id}）` : r.robot_id),
    el("td", { class: "robot-status" }, ROBOT_NAMES[r.status] || r.status || "未知"),
    el("td", {}, r.health_score == null ? "–" : String(r.health_score)),
    el("td", {}, HEALTH_NAMES[r.health_status] || r.health_status || "–"),
    el("td", {}, String(r.consecutive_failure_count ?? 0)))), "暂无机器人", 5);
}

function quantile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function breakerState(calls) {
  // As far as the events show it: an open breaker refuses calls (status breaker_open); the first call
  // that goes through again means it closed (or is half-open and let a trial through).
  if (!calls.length) return ["unknown", "no calls"];
  const latest = calls[0];
  if (latest.status === "breaker_open") return ["open", `open since ${fmtTime(latest.at)}`];
  const refused = calls.find((c) => c.status === "breaker_open");
  return ["closed", refused ? `closed (was open at ${fmtTime(refused.at)})` : "closed"];
}

function renderAi(now) {
  const recent = [...store.classified.values()].filter((m) => now - m.at <= WINDOW_MS);
  $("ai-classified").textContent = recent.length;
  $("ai-rules").textContent = recent.filter((m) => m.decided_by === "rules").length;
  $("ai-model").textContent = recent.filter((m) => m.decided_by === "model").length;
  $("ai-llm").textContent = recent.filter((m) => m.decided_by === "llm").length;
  const mix = {};
  for (const m of recent) {
    const key = m.message_type || m.sender_type || "?";
    mix[key] = (mix[key] || 0) + 1;
  }
  const entries = Object.entries(mix).sort((a, b) => b[1] - a[1]);
  const top = entries.length ? entries[0][1] : 1;
  $("ai-mix").replaceChildren(...(entries.length ? entries.map(([k, n]) => el("div", { class: "bar", "data-type": k },
    el("span", { class: "bar-label" }, k),
    el("span", { class: "bar-track" }, el("span", { class: "bar-fill", style: `width:${(100 * n) / top}%` })),
    el("span", { class: "bar-value" }, String(n)))) : [el("p", { class: "empty muted" }, "no messages yet")]));

  const calls = [...store.aiCalls.values()].filter((c) => now - c.at <= WINDOW_MS).sort((a, b) => b.at - a.at);
  $("ai-calls").textContent = calls.length;
  const failed = calls.filter((c) => c.status !== "ok").length;
  $("ai-error-rate").textContent = calls.length ? `${((100 * failed) / calls.length).toFixed(1)}%` : "–";
  const latencies = calls.map((c) => c.latency_ms).filter((v) => v != null).sort((a, b) => a - b);
  const p50 = quantile(latencies, 0.5), p95 = quantile(latencies, 0.95);
  $("ai-latency-p50").textContent = p50 == null ? "–" : `${p50} ms`;
  $("ai-latency-p95").textContent = p95 == null ? "–" : `${p95} ms`;
  const [state, text] = breakerState(calls);
  $("ai-breaker").dataset.state = state;
  $("ai-breaker").textContent = text;
  replace($("ai-call-list"), calls.slice(0, 10).map((c) => el("tr", { class: `call ${c.status}` },
    el("td", {}, fmtTime(c.at)), el("td", {}, c.model_id || c.provider || "–"), el("td", {}, c.status),
    el("td", {}, c.latency_ms == null ? "–" : `${c.latency_ms} ms`), el("td", {}, c.error_message || ""))), "no LLM calls", 5);
}

function render() {
  const now = Date.now();
  $("clock").textContent = fmtTime(now);
  renderBusiness(now);
  renderAi(now);
  if (openAlertId) renderAlertDialog();
}

// -- one alert: history and actions ------------------------------------------------------------

function showAlert(id) {
  openAlertId = id;
  $("alert-result").textContent = "";
  $("alert-reason").value = "";
  renderAlertDialog();
  const dialog = $("alert-dialog");
  if (!dialog.open) dialog.showModal();
}

function renderAlertDialog() {
  const a = store.alerts.get(openAlertId);
  if (!a) return;
  $("alert-title").textContent = `${a.level}级 ${alertTypeName(a.alert_type)} · ${STATUS_NAMES[a.status] || a.status}`;
  const details = [["告警编号", a.alert_id], ["群 / 用户", [a.group_name, a.user_name].filter(Boolean).join(" · ") || "–"],
    ["机器人", a.robot_id || "–"], ["触发消息", a.message_content || "–"], ["触发次数", String(a.trigger_count ?? 1)]];
  $("alert-details").replaceChildren(...details.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const firstLevel = (a.escalation_history || [])[0]?.from_level ?? a.level;
  const steps = [el("li", { class: "step raised" }, `${fmtTime(time(a.raised_at))} 触发，${firstLevel}级`)];
  for (const s of a.escalation_history || []) {
    steps.push(el("li", { class: "step escalation" }, `${fmtTime(time(s.at))} 升级 ${s.from_level}级 → ${s.to_level}级（${s.by === "repeat" ? "重复触发" : s.by}）`));
  }
  if ((a.trigger_count || 1) > 1) steps.push(el("li", {}, `最近一次触发 ${fmtTime(time(a.last_triggered_at))}`));
  if (a.notified_at) steps.push(el("li", {}, `${fmtTime(time(a.notified_at))} 已通知`));
  if (a.status === "cancelled") {
    const why = names.cancel_reasons[a.cancel_reason] || a.cancel_reason;
    steps.push(el("li", { class: "step cancellation" }, `${fmtTime(time(a.cancelled_at))} 取消：${why}${a.cancelled_by ? `（${a.cancelled_by}）` : ""}`));
  }
  $("alert-history").replaceChildren(...steps);
  const mayAct = me && ACTION_ROLES.has(me.role) && OPEN.has(a.status);
  $("alert-actions").hidden = !mayAct;
  $("alert-escalate").disabled = a.level >= 4;
}

async function act(action) {
  const reason = $("alert-reason").value.trim();
  if (!reason) { $("alert-result").textContent = "请填写原因"; return; }
  const r = await api(`/api/alerts/${encodeURIComponent(openAlertId)}/${action}`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ reason, actor: (me && me.username) || "console" }),
  });
  const body = await r.json().catch(() => ({}));
  $("alert-result").textContent = r.status === 202
    ? `已提交（${body.request_id}），等待数据流处理`
    : `失败（HTTP ${r.status}）：${problemText(body)}`;
}

function problemText(body) {
  return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || "");
}

// -- the after-sales task board ----------------------------------------------------------------

const TASK_COLUMNS = ["pending", "assigned", "waiting_user", "in_progress"];
const PRIORITY_NAMES = { urgent: "紧急", high: "高", normal: "普通", low: "低" };
const AVAILABILITY_NAMES = { online: "在线", busy: "忙碌", offline: "离线" };
const TASK_ACTIONS = { complete: "完成", cancel: "取消", assign: "转派" };
const BOARD_REFRESH_MS = 30 * 1000; // the ages and the overdue flags move on
const BOARD_MIN_GAP_MS = 1000; // a burst of task events is one reload
const BOARD_SETTLE_MS = 700;

const board = { tasks: [], total: 0, staff: [], types: {}, fetchedAt: 0, submitted: new Map() };
let openTask = null; // {task, action} of the task dialog

// A list the page reads from the API again when events say it changed: `schedule()` reloads after
// the events settled (the dataflow writes the monitor topic and the PostgreSQL rows at the same time:
// the event may come before its row), at most once a second; `run()` reloads now, or once more after
// the reload in flight.
function makeReloader(load) {
  let timer = null;
  let loading = false;
  let again = false;
  let lastAt = 0;
  const reloader = {
    schedule() {
      if (timer != null) return;
      const wait = Math.max(BOARD_SETTLE_MS, lastAt + BOARD_MIN_GAP_MS - Date.now());
      timer = setTimeout(() => { timer = null; reloader.run(); }, wait);
    },
    async run() {
      if (loading) { again = true; return; }
      loading = true;
      again = false;
      lastAt = Date.now();
      try {
        await load();
      } finally {
        loading = false;
        if (again) reloader.schedule();
      }
    },
  };
  return reloader;
}

function can(permission) {
  // /api/auth/me lists the role's permissions; without an account service the page acts as admin.
  if (!me) return false;
  return Array.isArray(me.permissions) ? me.permissions.includes(permission) : me.role === "admin";
}

function isBoardEvent(ev) {
  return typeof ev.event === "string" && (ev.event.startsWith("task_") || ev.event === "staff_status");
}

const boardReloader = makeReloader(fetchBoard);
function scheduleBoard() { boardReloader.schedule(); }
function loadBoard() { return boardReloader.run(); }

async function fetchBoard() {
  try {
    const needTypes = Object.keys(board.types).length === 0;
    const [tasks, staff, types] = await Promise.all([
      api("/api/tasks?open=true&limit=200"), api("/api/staff"), needTypes ? api("/api/tasks/types") : null,
    ]);
    for (const r of [tasks, staff]) if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const page = await tasks.json();
    board.tasks = page.items;
    board.total = page.total;
    board.staff = await staff.json();
    if (types && types.ok) board.types = await types.json();
    board.fetchedAt = Date.now();
    $("tasks-error").textContent = "";
    renderBoard();
  } catch (e) {
    $("tasks-error").textContent = `任务看板加载失败：${e.message}`;
  }
}

function clearBoard() {
  Object.assign(board, { tasks: [], total: 0, staff: [], fetchedAt: 0 });
  board.submitted.clear();
  renderBoard();
}

function fmtMinutes(minutes) {
  const m = Math.max(0, Math.floor(minutes));
  if (m < 60) return `${m} 分钟`;
  if (m < 1440) return `${Math.floor(m / 60)} 小时`;
  return `${Math.floor(m / 1440)} 天`;
}

function typeLabel(t) { return board.types[t.task_type] || t.task_type; }

function renderBoard() {
  const now = Date.now();
  const open = board.tasks.filter((t) => TASK_COLUMNS.includes(t.status));
  for (const [id, sent] of board.submitted) { // forget a request once the task moved (or left the board)
    const t = open.find((x) => x.task_id === id);
    if (!t || t.status !== sent.status || t.assigned_staff_name !== sent.assignee) board.submitted.delete(id);
  }
  for (const status of TASK_COLUMNS) { // in the API's order: urgent first, then oldest
    const cards = open.filter((t) => t.status === status).map((t) => taskCard(t, now));
    $(`tasks-count-${status}`).textContent = String(cards.length);
    $(`tasks-${status}`).replaceChildren(...(cards.length ? cards : [el("p", { class: "empty muted" }, "暂无")]));
  }
  const overdue = open.filter((t) => t.overdue).length;
  $("tasks-summary").textContent = board.fetchedAt ? `（未完成 ${board.total}，已超时 ${overdue}）` : "";
  $("desk-strip").replaceChildren(...(board.staff.length ? board.staff.map((m) => el("span", {
    class: `member st-${m.status}${m.open_tasks >= m.max_open_tasks ? " full" : ""}`, "data-staff": m.name,
  }, el("b", { class: "member-name" }, m.name),
  el("span", { class: "member-status" }, AVAILABILITY_NAMES[m.status] || m.status),
  el("span", { class: "member-load", title: "未完成任务 / 上限" }, `${m.open_tasks} / ${m.max_open_tasks}`)))
    : [el("span", { class: "empty muted" }, "未配置售后值班人员")]));
}

function taskCard(t, now) {
  const prio = t.priority || "normal";
  const age = t.age_minutes == null ? null : t.age_minutes + (now - board.fetchedAt) / 60000;
  const card = el("article", {
    class: `task prio-${prio}${t.overdue ? " overdue" : ""}`, title: t.issue_description || "",
    "data-task-id": t.task_id, "data-status": t.status, "data-priority": prio,
  },
  el("div", { class: "task-head" },
    el("span", { class: "task-type" }, typeLabel(t)),
    el("span", { class: `badge prio prio-${prio}` }, PRIORITY_NAMES[prio] || prio)),
  taskOwner(t),
  el("div", { class: "task-meta" },
    el("span", { class: t.assigned_staff_name ? "task-assignee" : "task-assignee none" }, t.assigned_staff_name || "未分配"),
    el("span", { class: "task-age" }, age == null ? "–" : fmtMinutes(age)),
    ...(t.overdue ? [el("span", { class: "overdue-tag" }, "已超时")] : [])));
  const sent = board.submitted.get(t.task_id);
  if (sent) card.append(el("div", { class: "task-note muted" }, `已提交${TASK_ACTIONS[sent.action]}，等待处理`));
  const actions = [];
  if (can("tasks.manage")) actions.push("complete", "cancel");
  if (can("tasks.assign") && board.staff.length) actions.push("assign");
  if (actions.length) {
    card.append(el("div", { class: "task-actions" }, ...actions.map((a) => {
      const b = el("button", { type: "button", class: `task-${a}`, "data-action": a }, TASK_ACTIONS[a]);
      b.addEventListener("click", () => showTaskDialog(t, a));
      return b;
    })));
  }
  return card;
}

function taskOwner(t) {
  const text = [t.user_name, t.group_name].filter(Boolean).join(" · ") || "–";
  if (!t.session_id || !t.user_name) return el("div", { class: "task-owner" }, text);
  const owner = el("div", { class: "task-owner link", title: "查看客户画像" }, text);
  owner.addEventListener("click", () => showCustomer(t.session_id, t.user_name)); // customers.js
  return owner;
}

function showTaskDialog(t, action) {
  openTask = { task: t, action };
  $("task-title").textContent = `${TASK_ACTIONS[action]}任务 · ${typeLabel(t)}`;
  $("task-subject").textContent = [t.user_name, t.group_name, t.assigned_staff_name || "未分配"].filter(Boolean).join(" · ");
  $("task-assignee-row").hidden = action !== "assign";
  if (action === "assign") {
    const others = board.staff.filter((m) => m.name !== t.assigned_staff_name);
    $("task-assignee").replaceChildren(...others.map((m) => el("option", { value: m.name },
      `${m.name}（${AVAILABILITY_NAMES[m.status] || m.status} ${m.open_tasks}/${m.max_open_tasks}）`)));
  }
  $("task-reason").value = "";
  $("task-reason").placeholder = action === "cancel" ? "请填写原因" : "原因（可选）";
  $("task-result").textContent = "";
  $("task-submit").disabled = false;
  $("task-submit").textContent = `确认${TASK_ACTIONS[action]}`;
  const dialog = $("task-dialog");
  if (!dialog.open) dialog.showModal();
}

async function submitTask() {
  if (!openTask) return;
  const { task, action } = openTask;
  const reason = $("task-reason").value.trim();
  if (action === "cancel" && !reason) { $("task-result").textContent = "请填写原因"; return; }
  const body = { action, reason, actor: (me && me.username) || "console" };
  if (action === "assign") {
    body.assignee = $("task-assignee").value;
    if (!body.assignee) { $("task-result").textContent = "请选择转派给谁"; return; }
  }
  $("task-submit").disabled = true;
  const r = await api(`/api/tasks/${encodeURIComponent(task.task_id)}`, {
    method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  }).catch(() => null);
  if (openTask === null || openTask.task !== task) return; // the dialog was closed meanwhile
  if (!r) { $("task-result").textContent = "失败：网络错误"; $("task-submit").disabled = false; return; }
  const answer = await r.json().catch(() => ({}));
  if (r.status === 202) {
    $("task-result").textContent = `已提交（${answer.request_id}），等待数据流处理`;
    board.submitted.set(task.task_id, { action, status: task.status, assignee: task.assigned_staff_name });
    renderBoard();
    scheduleBoard();
  } else {
    $("task-result").textContent = `失败（HTTP ${r.status}）：${problemText(answer)}`;
    $("task-submit").disabled = false;
  }
}

// -- wiring ------------------------------------------------------------------------------------

$("login-form").addEventListener("submit", login);
$("token-submit").addEventListener("click", useToken);
$("logout").addEventListener("click", logout);
$("alert-cancel").addEventListener("click", () => act("cancel"));
$("alert-escalate").addEventListener("click", () => act("escalate"));
$("alert-dialog").addEventListener("close", () => { openAlertId = null; });
$("task-submit").addEventListener("click", submitTask);
$("task-dialog").addEventListener("close", () => { openTask = null; });
setInterval(() => { if (stateLoaded) render(); }, 1000); // ages and the last-hour windows move on
setInterval(() => { if (stateLoaded) loadBoard(); }, BOARD_REFRESH_MS);
start();
