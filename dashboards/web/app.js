// lcpipe built-in dashboards: fetches panel rows from /api/query and draws
// them with plain SVG and HTML. No library, nothing from the internet.
'use strict';

const PRESETS = { '15m': 15 * 60e3, '1h': 3600e3, '6h': 6 * 3600e3, '24h': 864e5, '7d': 7 * 864e5, '30d': 30 * 864e5 };
const COLORS = ['#3fa9f5', '#f5a623', '#43c785', '#ef5b5b', '#b07cf2', '#2dd4bf', '#f472b6', '#facc15', '#94a3b8', '#fb923c', '#60a5fa', '#a3e635'];
const SVGNS = 'http://www.w3.org/2000/svg';

const state = { dashboards: [], refreshTimer: null, generation: 0, errors: [] };
const $ = (id) => document.getElementById(id);

// Console errors and uncaught exceptions are recorded in #status, so a
// headless browser test can see them in the DOM.
const origError = console.error.bind(console);
console.error = (...args) => { state.errors.push(args.map(String).join(' ')); setStatus(); origError(...args); };
window.addEventListener('error', (e) => { state.errors.push(String(e.message)); setStatus(); });
window.addEventListener('unhandledrejection', (e) => { state.errors.push('unhandled: ' + String(e.reason)); setStatus(); });

const status = { state: 'loading', panels: 0, ok: 0, withData: 0 };
function setStatus() {
  const el = $('status');
  if (!el) return;
  el.dataset.state = state.errors.length ? 'error' : status.state;
  el.dataset.panels = status.panels;
  el.dataset.ok = status.ok;
  el.dataset.withData = status.withData;
  el.dataset.errors = state.errors.join(' | ');
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

// ---- URL state ----------------------------------------------------------

function readURL() {
  const q = new URLSearchParams(location.search);
  return {
    dashboard: q.get('dashboard') || (state.dashboards[0] && state.dashboards[0].uid),
    range: q.get('range') || (q.get('from') ? 'custom' : '24h'),
    from: q.get('from'), to: q.get('to'),
    org: q.get('org') || '', group: q.get('group') || '-1', agent: q.get('agent') || '',
    refresh: q.get('refresh'),
  };
}

function writeURL(s) {
  const q = new URLSearchParams();
  q.set('dashboard', s.dashboard);
  if (s.range === 'custom') { q.set('from', s.from); q.set('to', s.to); } else q.set('range', s.range);
  if (s.org) q.set('org', s.org);
  if (s.group !== '-1') q.set('group', s.group);
  if (s.agent) q.set('agent', s.agent);
  q.set('refresh', s.refresh);
  history.replaceState(null, '', '?' + q.toString());
}

function current() {
  const s = readURL();
  s.range = $('range').value;
  s.org = $('org').value;
  s.group = $('group').value;
  s.agent = $('agent').value;
  s.refresh = $('refresh').value;
  if (s.range === 'custom') {
    s.from = String(Date.parse($('from').value + 'Z') || s.from);
    s.to = String(Date.parse($('to').value + 'Z') || s.to);
  }
  return s;
}

function timeRange(s) {
  if (s.range === 'custom' && s.from && s.to) return [Number(s.from), Number(s.to)];
  const now = Date.now();
  return [now - (PRESETS[s.range] || PRESETS['24h']), now];
}

// ---- formatting ---------------------------------------------------------

function fmtDuration(v) {
  if (v == null || !isFinite(v)) return '–';
  const sign = v < 0 ? '-' : '';
  const a = Math.abs(v);
  if (a < 60) return sign + a.toFixed(a < 10 ? 2 : 1) + ' s';
  // Round to the unit shown first, so 3599.7 s is "1h 00m", never "59m 60s".
  if (a < 3600) { const s = Math.round(a); return sign + Math.floor(s / 60) + 'm ' + String(s % 60).padStart(2, '0') + 's'; }
  if (a < 86400) { const m = Math.round(a / 60); return sign + Math.floor(m / 60) + 'h ' + String(m % 60).padStart(2, '0') + 'm'; }
  const h = Math.round(a / 3600);
  return sign + Math.floor(h / 24) + 'd ' + (h % 24) + 'h';
}

// fmtCompact keeps axis labels short: 1.2k, 3.4M.
function fmtCompact(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + 'M';
  if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + 'k';
  return Number.isInteger(v) ? String(v) : v.toFixed(a < 10 ? 2 : 1);
}

// niceStep rounds a raw axis step to 1, 2 or 5 times a power of ten.
function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

function fmtNumber(v, digits) {
  if (v == null || !isFinite(v)) return '–';
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  return v.toLocaleString('en-US', { maximumFractionDigits: digits == null ? 2 : digits });
}

// format picks a format from the column name first, then the panel unit.
function format(v, col, unit, isMain) {
  if (typeof v === 'string') return v;
  if (/_s$/.test(col)) return fmtDuration(v);
  if (/_pct$/.test(col) || (isMain && unit === 'percent')) return fmtNumber(v, 1) + ' %';
  if (col === 'score') return fmtNumber(v, 3);
  if (unit === 'per-minute') return fmtNumber(v, 1) + '/min';
  if (isMain && unit === 's') return fmtDuration(v);
  return fmtNumber(v);
}

function label(col) { return col.replace(/_s$/, '').replace(/_pct$/, ' %').replace(/_/g, ' '); }

function fmtTime(ms, spanMs) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  const hm = p(d.getUTCHours()) + ':' + p(d.getUTCMinutes());
  if (spanMs <= 36 * 3600e3) return hm;
  return p(d.getUTCMonth() + 1) + '-' + p(d.getUTCDate()) + (spanMs <= 8 * 864e5 ? ' ' + hm : '');
}

// ---- drawing ------------------------------------------------------------

function visibleColumns(panel, res) {
  const hidden = new Set(panel.hidden || []);
  return res.columns.map((c, i) => ({ name: c.name, i })).filter((c) => !hidden.has(c.name));
}

function drawStat(body, panel, res) {
  const row = res.rows[0] || [];
  const cols = visibleColumns(panel, res);
  const box = el('div', { class: 'stat' });
  cols.forEach((c, k) => {
    if (k === 0) box.append(el('div', { class: 'main', text: format(row[c.i], c.name, panel.unit, true) }));
    else box.append(el('div', { class: 'sub', text: label(c.name) }, el('b', { text: format(row[c.i], c.name, panel.unit, false) })));
  });
  body.append(box);
  return res.rows.length > 0 && row[cols[0].i] != null;
}

function drawTable(body, panel, res) {
  const cols = visibleColumns(panel, res);
  const t = el('table');
  t.append(el('thead', {}, el('tr', {}, ...cols.map((c) => el('th', { text: label(c.name) })))));
  const tb = el('tbody');
  for (const r of res.rows) tb.append(el('tr', {}, ...cols.map((c) => el('td', { text: format(r[c.i], c.name, panel.unit, false) }))));
  t.append(tb);
  body.append(t);
  return res.rows.length > 0;
}

function drawBar(body, panel, res) {
  const cols = visibleColumns(panel, res);
  const lab = cols[0], val = cols[1];
  const rows = res.rows;
  if (!rows.length) return false;
  const width = Math.max(260, body.clientWidth - 4);
  const rowH = 22, labelW = Math.min(230, Math.round(width * 0.38)), valueW = 80;
  const max = Math.max(...rows.map((r) => Number(r[val.i]) || 0), 1e-9);
  const s = svg('svg', { width, height: rows.length * rowH + 4, role: 'img', 'aria-label': panel.title, class: 'chart bar' });
  rows.forEach((r, k) => {
    const y = k * rowH + 2;
    const name = String(r[lab.i]);
    s.append(svg('text', { x: 0, y: y + 15, class: 'bar-label' }, name.length > 34 ? name.slice(0, 33) + '…' : name));
    const w = Math.max(1, ((Number(r[val.i]) || 0) / max) * (width - labelW - valueW));
    const rect = svg('rect', { x: labelW, y: y + 3, width: w, height: rowH - 7, rx: 2, fill: COLORS[k % COLORS.length] });
    rect.append(svg('title', {}, cols.slice(1).map((c) => label(c.name) + ': ' + format(r[c.i], c.name, panel.unit, false)).join('\n')));
    s.append(rect);
    s.append(svg('text', { x: labelW + w + 6, y: y + 15, class: 'value' }, format(r[val.i], val.name, panel.unit, true)));
  });
  body.append(s);
  return true;
}

// series turns rows into {name, points:[[t,v]]} lists, wide or long.
function series(panel, res) {
  const cols = visibleColumns(panel, res);
  const out = [];
  if (panel.long) {
    const by = new Map();
    for (const r of res.rows) {
      const k = String(r[1]);
      if (!by.has(k)) by.set(k, []);
      by.get(k).push([r[0], Number(r[2])]);
    }
    for (const [name, points] of by) out.push({ name, col: res.columns[2].name, points });
  } else {
    for (const c of cols.slice(1)) out.push({ name: label(c.name), col: c.name, points: res.rows.map((r) => [r[0], Number(r[c.i])]) });
  }
  return out;
}

function drawTimeSeries(body, panel, res, from, to) {
  const ss = series(panel, res);
  if (!res.rows.length) return false;
  const width = Math.max(300, body.clientWidth - 4);
  const height = Math.max(120, body.clientHeight - 30);
  const m = { l: 62, r: 12, t: 8, b: 22 };
  const W = width - m.l - m.r, H = height - m.t - m.b;
  let top = 0;
  for (const s of ss) for (const [, v] of s.points) if (isFinite(v)) top = Math.max(top, v);
  const isDur = ss[0] && (/_s$/.test(ss[0].col) || panel.unit === 's');
  const step = isDur && top > 120 ? niceStep(top / 4 / 60) * 60 : niceStep((top || 1) / 4);
  const max = Math.max(step, Math.ceil(top / step) * step);
  const x = (t) => m.l + ((t - from) / (to - from)) * W;
  const y = (v) => m.t + H - (v / max) * H;
  const g = svg('svg', { width, height, role: 'img', 'aria-label': panel.title, class: 'chart timeseries' });
  for (let v = 0; v <= max + step / 2; v += step) {
    g.append(svg('line', { x1: m.l, x2: m.l + W, y1: y(v), y2: y(v), class: 'axis' }));
    g.append(svg('text', { x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, isDur ? fmtDuration(v) : fmtCompact(v) + (panel.unit === 'per-minute' ? '/min' : '')));
  }
  for (let k = 0; k <= 5; k++) {
    const t = from + ((to - from) * k) / 5;
    g.append(svg('text', { x: x(t), y: height - 6, 'text-anchor': k === 0 ? 'start' : k === 5 ? 'end' : 'middle' }, fmtTime(t, to - from)));
  }
  ss.forEach((s, k) => {
    const color = COLORS[k % COLORS.length];
    const pts = s.points.filter(([t, v]) => isFinite(v)).sort((a, b) => a[0] - b[0]);
    if (pts.length === 1) g.append(svg('circle', { cx: x(pts[0][0]), cy: y(pts[0][1]), r: 3, fill: color }));
    else g.append(svg('polyline', { points: pts.map(([t, v]) => x(t).toFixed(1) + ',' + y(v).toFixed(1)).join(' '), fill: 'none', stroke: color, 'stroke-width': 1.8 }));
  });
  body.append(g);
  body.append(el('div', { class: 'legend' }, ...ss.map((s, k) => {
    const i = el('i');
    i.style.background = COLORS[k % COLORS.length];
    return el('span', {}, i, s.name);
  })));
  return true;
}

const DRAW = { stat: drawStat, table: drawTable, bar: drawBar, timeseries: drawTimeSeries };

// ---- loading ------------------------------------------------------------

async function getJSON(url) {
  const r = await fetch(url, { cache: 'no-store' });
  // Signed out (session expired, server restarted): back to the sign-in page.
  if (r.status === 401) { location.href = '/signin'; throw new Error('signed out'); }
  const body = await r.json().catch(() => ({ error: 'bad response (' + r.status + ')' }));
  if (!r.ok) throw new Error((body.error || r.statusText) + (body.request_id ? ' [request ' + body.request_id + ']' : ''));
  return body;
}

async function loadFilters(s) {
  try {
    const f = await getJSON('/api/filters?org=' + encodeURIComponent(s.org));
    // A viewer of one organization sees only it (the server enforces it).
    const own = state.viewer && state.viewer.organization;
    if (own) fill($('org'), [[own, own]], own); else fill($('org'), [['', 'All']].concat(f.orgs.map((o) => [o, o])), s.org);
    $('org').disabled = !!own;
    fill($('group'), [['-1', 'All']].concat(f.groups.map((g) => [String(g), 'group ' + g])), s.group);
    fill($('agent'), [['', 'All']].concat(f.agents.map((a) => [a, a])), s.agent);
  } catch (e) {
    // The dashboards work without filter lists (e.g. an empty database).
    $('updated').textContent = 'filters unavailable: ' + e.message;
  }
}

function fill(select, options, value) {
  select.replaceChildren(...options.map(([v, t]) => el('option', { value: v, text: t })));
  if (!options.some(([v]) => v === value)) select.append(el('option', { value, text: value }));
  select.value = value;
}

function render() {
  const s = current();
  writeURL(s);
  const gen = ++state.generation;
  const dash = state.dashboards.find((d) => d.uid === s.dashboard) || state.dashboards[0];
  document.querySelectorAll('nav a').forEach((a) => a.classList.toggle('active', a.dataset.uid === dash.uid));
  $('title').textContent = dash.title;
  $('description').textContent = dash.description;
  document.title = dash.title + ' · lcpipe';
  const [from, to] = timeRange(s);
  const grid = $('grid');
  grid.replaceChildren();
  status.state = 'loading'; status.panels = dash.panels.length; status.ok = 0; status.withData = 0;
  setStatus();
  let pending = dash.panels.length;
  for (const p of dash.panels) {
    const took = el('span', { class: 'took' });
    const h = el('h2', { title: p.description }, el('span', { text: p.title }), took);
    const body = el('div', { class: 'body' }, el('div', { class: 'msg', text: 'loading…' }));
    const card = el('section', { class: 'panel', 'data-panel': p.id, 'data-viz': p.viz, title: '' }, h, body);
    card.style.gridColumn = 'span ' + p.width;
    card.style.gridRow = 'span ' + p.height;
    grid.append(card);
    const q = new URLSearchParams({ dashboard: dash.uid, panel: p.id, from, to, org: s.org, group: s.group, agent: s.agent });
    getJSON('/api/query?' + q).then((res) => {
      if (gen !== state.generation) return;
      body.replaceChildren();
      took.textContent = res.elapsed_ms.toFixed(0) + ' ms';
      const has = DRAW[p.viz](body, p, res, from, to);
      if (!has) body.append(el('div', { class: 'msg', text: 'no data in this range' }));
      card.dataset.state = has ? 'data' : 'empty';
      status.ok++;
      if (has) status.withData++;
    }).catch((e) => {
      if (gen !== state.generation) return;
      body.replaceChildren(el('div', { class: 'err', text: e.message }));
      card.dataset.state = 'error';
      state.errors.push(p.id + ': ' + e.message);
    }).finally(() => {
      if (gen !== state.generation) return;
      if (--pending === 0) {
        status.state = 'done';
        $('updated').textContent = 'updated ' + new Date().toISOString().slice(11, 19) + ' UTC';
      }
      setStatus();
    });
  }
  schedule(s);
}

function schedule(s) {
  clearTimeout(state.refreshTimer);
  const sec = Number(s.refresh);
  if (sec > 0) state.refreshTimer = setTimeout(render, sec * 1000);
}

function toLocalInput(ms) { return new Date(ms).toISOString().slice(0, 16); }

async function main() {
  const meta = await getJSON('/api/dashboards');
  state.dashboards = meta.dashboards;
  state.viewer = meta.viewer || {};
  $('who').textContent = state.viewer.organization ? 'organization ' + state.viewer.organization : 'all organizations (token)';
  const s = readURL();
  if (state.viewer.organization) s.org = state.viewer.organization;
  if (!s.refresh) s.refresh = String(meta.refresh_seconds);
  $('range').value = s.range;
  $('refresh').value = [...$('refresh').options].some((o) => o.value === s.refresh) ? s.refresh : '30';
  $('controls').classList.toggle('custom-range', s.range === 'custom');
  const [from, to] = timeRange(s);
  $('from').value = toLocalInput(from);
  $('to').value = toLocalInput(to);
  const nav = $('nav');
  for (const d of state.dashboards) {
    const a = el('a', { href: '?dashboard=' + d.uid, text: d.title });
    a.dataset.uid = d.uid;
    a.addEventListener('click', (e) => { e.preventDefault(); const q = new URLSearchParams(location.search); q.set('dashboard', d.uid); history.replaceState(null, '', '?' + q); render(); });
    nav.append(a);
  }
  fill($('org'), [['', 'All']], s.org);
  fill($('group'), [['-1', 'All']], s.group);
  fill($('agent'), [['', 'All']], s.agent);
  await loadFilters(s);
  $('range').addEventListener('change', () => {
    const custom = $('range').value === 'custom';
    $('controls').classList.toggle('custom-range', custom);
    render();
  });
  for (const id of ['from', 'to', 'group', 'agent', 'refresh']) $(id).addEventListener('change', render);
  $('org').addEventListener('change', async () => { await loadFilters(current()); render(); });
  $('reload').addEventListener('click', render);
  render();
}

main().catch((e) => { state.errors.push('start: ' + e.message); status.state = 'error'; setStatus(); });
