// Customer profiles on the monitor page: the owners the dataflow described (GET /api/customers, the
// least healthy first), read again on customer_updated events (at most once a second) and every 30 s;
// a row (or the owner on a task card) opens the customer: profile, tasks, alerts, latest messages
// (GET /api/customers/{session_id}/{name}). Uses monitor.js's helpers ($, el, api, makeReloader, ...).
"use strict";

const BAND_NAMES = { healthy: "健康", watch: "关注", at_risk: "风险" };
const TREND_NAMES = { up: "↑ 上升", down: "↓ 下降", flat: "→ 平稳" };
const COOPERATION_NAMES = { cooperative: "配合", partial: "部分配合", uncooperative: "不配合", unknown: "未知" };
const TASK_STATUS_NAMES = {
  pending: "待分配", assigned: "已分配", waiting_user: "等待用户", in_progress: "处理中", completed: "已完成", cancelled: "已取消",
};
const SENDER_NAMES = { user: "用户", staff: "售后", operator: "运营", assistant: "助理", robot: "机器人" };

const customers = { items: [], total: 0, open: null }; // open: {session_id, user_name} of the dialog
const customersReloader = makeReloader(fetchCustomers);

function pct(v) { return v == null ? "–" : `${Math.round(v * 100)}%`; }

async function fetchCustomers() {
  const params = new URLSearchParams({ limit: "100" });
  const q = $("customer-search").value.trim();
  const band = $("customer-band").value;
  if (q) params.set("q", q);
  if (band) params.append("band", band);
  try {
    const r = await api(`/api/customers?${params}`);
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const page = await r.json();
    customers.items = page.items;
    customers.total = page.total;
    $("customers-error").textContent = "";
    renderCustomers();
    if (customers.open) await fetchCustomer(customers.open.session_id, customers.open.user_name);
  } catch (e) {
    $("customers-error").textContent = `客户画像加载失败：${e.message}`;
  }
}

function renderCustomers() {
  const rows = customers.items.map((c) => {
    const tr = el("tr", { "data-session-id": c.session_id, "data-user-name": c.user_name, "data-band": c.health_band },
      el("td", { class: "customer-name" }, c.user_name),
      el("td", {}, c.group_name || "私聊"),
      el("td", { class: "customer-score" }, String(c.health_score)),
      el("td", {}, el("span", { class: `band band-${c.health_band}` }, BAND_NAMES[c.health_band] || c.health_band)),
      el("td", {}, `${pct(c.satisfaction)} ${TREND_NAMES[c.satisfaction_trend] || ""}`),
      el("td", {}, COOPERATION_NAMES[c.cooperation_level] || c.cooperation_level),
      el("td", {}, String(c.open_tasks.length)),
      el("td", {}, String(c.open_alerts)),
      el("td", {}, fmtTime(time(c.last_message_at))));
    tr.addEventListener("click", () => showCustomer(c.session_id, c.user_name));
    return tr;
  });
  $("customer-list").replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colspan: "9" }, "暂无客户"))]));
  const risky = customers.items.filter((c) => c.health_band === "at_risk").length;
  $("customers-summary").textContent = `（共 ${customers.total}，本页风险 ${risky}）`;
}

function clearCustomers() {
  Object.assign(customers, { items: [], total: 0, open: null });
  $("customer-list").replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: "9" }, "暂无客户")));
  $("customers-summary").textContent = "";
}

async function showCustomer(sessionId, userName) {
  customers.open = { session_id: sessionId, user_name: userName };
  $("customer-title").textContent = `客户 · ${userName}`;
  $("customer-error").textContent = "";
  const dialog = $("customer-dialog");
  if (!dialog.open) dialog.showModal();
  await fetchCustomer(sessionId, userName);
}

async function fetchCustomer(sessionId, userName) {
  const r = await api(`/api/customers/${encodeURIComponent(sessionId)}/${encodeURIComponent(userName)}`).catch(() => null);
  const open = customers.open;
  if (!open || open.session_id !== sessionId || open.user_name !== userName) return; // closed or another one
  if (!r || !r.ok) {
    $("customer-error").textContent = r && r.status === 404 ? "暂无该客户的画像（数据流尚未处理其消息）" : `加载失败：${r ? `HTTP ${r.status}` : "网络错误"}`;
    return;
  }
  renderCustomer(await r.json());
}

function renderCustomer({ profile: p, history, tasks, alerts }) {
  const req = p.requirements || {};
  const coop = p.cooperation || {};
  const byType = Object.entries(p.messages || {}).map(([t, n]) => `${t} ${n}`).join("，") || "–";
  const details = [
    ["健康分", `${p.health_score}（${BAND_NAMES[p.health_band] || p.health_band}）`],
    ["群", p.group_name || "私聊"],
    ["满意度", `${pct(p.satisfaction)} ${TREND_NAMES[p.satisfaction_trend] || ""}`],
    ["配合度", `${COOPERATION_NAMES[p.cooperation_level] || p.cooperation_level}（配合 ${coop.responded || 0}，拒绝 ${coop.refused || 0}，超时 ${coop.timeout || 0}）`],
    ["需求漏斗", `提出 ${req.needs || 0} → 建单 ${req.opened || 0} → 完成 ${req.completed || 0}（取消 ${req.cancelled || 0}）`],
    ["平均响应", p.avg_response_minutes == null ? "–" : `${p.avg_response_minutes} 分钟（${p.responses} 次）`],
    ["等待回复", p.waiting_since ? `自 ${fmtTime(time(p.waiting_since))}` : "否"],
    ["消息", `${p.message_count} 条：${byType}`],
    ["首次 / 最近", `${fmtTime(time(p.first_seen_at))} / ${fmtTime(time(p.last_message_at))}`],
  ];
  $("customer-profile").replaceChildren(...details.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const taskRows = tasks.map((t) => el("tr", { "data-task-id": t.task_id },
    el("td", {}, typeLabel(t)), el("td", {}, TASK_STATUS_NAMES[t.status] || t.status),
    el("td", {}, t.assigned_staff_name || "未分配"), el("td", {}, fmtTime(time(t.opened_at))),
    el("td", {}, t.completed_at ? fmtTime(time(t.completed_at)) : t.overdue ? "已超时" : "–")));
  $("customer-tasks").replaceChildren(...(taskRows.length ? taskRows : [el("tr", { class: "empty" }, el("td", { colspan: "5" }, "暂无任务"))]));
  const alertRows = alerts.map((a) => el("tr", { "data-alert-id": a.alert_id },
    el("td", {}, el("span", { class: `badge lv${a.alert_level}` }, `${a.alert_level}级`)),
    el("td", {}, alertTypeName(a.alert_type)), el("td", {}, STATUS_NAMES[a.status] || a.status),
    el("td", {}, fmtTime(time(a.raised_at)))));
  $("customer-alerts").replaceChildren(...(alertRows.length ? alertRows : [el("tr", { class: "empty" }, el("td", { colspan: "4" }, "暂无告警"))]));
  const lines = history.map((m) => el("li", {}, `${fmtTime(time(m.received_at))} [${SENDER_NAMES[m.sender_type] || m.sender_type || "–"}] ${m.content || `（${m.content_kind || "非文本"}）`}`));
  $("customer-history").replaceChildren(...(lines.length ? lines : [el("li", { class: "empty muted" }, "暂无消息")]));
}

// -- wiring ------------------------------------------------------------------------------------

let searchTimer = null;
$("customer-search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => customersReloader.run(), 300);
});
$("customer-band").addEventListener("change", () => customersReloader.run());
$("customer-dialog").addEventListener("close", () => { customers.open = null; });
setInterval(() => { if (stateLoaded) customersReloader.run(); }, BOARD_REFRESH_MS);
