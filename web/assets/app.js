// lsim's web client. Every piece of group content (chat text, nicks, file
// names, reasons) goes into the page through textContent or an attribute,
// never as markup: nothing a member sends can become script.
'use strict';

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
};

const state = { nick: '', left: false, files: new Map(), users: [], chosen: new Set(), positions: [] };

function scrolled(fn) {
  const w = $('timeline-wrap');
  const atEnd = w.scrollHeight - w.scrollTop - w.clientHeight < 40;
  fn();
  if (atEnd) w.scrollTop = w.scrollHeight;
}

function say(li) {
  scrolled(() => $('timeline').appendChild(li));
}

function time(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function onChat(m) {
  const li = el('li', 'chat' + (m.own ? ' own' : '') + (m.private ? ' private' : ''));
  li.dataset.from = m.from;
  li.title = (m.via === 'xmpp' ? 'came through the XMPP room' : 'came on multicast') + (m.sent_ms ? ' · sent ' + new Date(m.sent_ms).toLocaleString() : '');
  if (m.placement === 'after-missing') {
    say(el('li', 'notice error', m.missing + ' earlier message(s) from ' + m.from + ' did not arrive in time'));
  }
  li.appendChild(el('span', 'from', m.from));
  li.appendChild(el('span', 'text', m.text));
  if (m.private) li.appendChild(el('span', 'tag private', 'private'));
  if (m.placement === 'late') li.appendChild(el('span', 'tag late', 'late'));
  if (m.history) li.appendChild(el('span', 'tag', 'history'));
  li.appendChild(el('span', 'tag', time(m.sent_ms)));
  say(li);
}

function onUnreadable(m) {
  const li = el('li', 'unreadable');
  li.title = m.via === 'xmpp' ? 'came through the XMPP room' : 'came on multicast';
  li.appendChild(el('span', 'from', m.from));
  li.appendChild(el('span', 'text', 'could not be read: ' + m.why));
  say(li);
}

function onGroup(g) {
  state.nick = g.nick || '';
  $('me').textContent = state.nick || 'lsim';
  const x = $('xmpp');
  x.textContent = g.xmpp === 'up' ? 'XMPP up' : 'XMPP down';
  x.className = 'pill ' + (g.xmpp === 'up' ? 'up' : 'down');
  const parts = [];
  if (g.epoch !== undefined) parts.push('epoch ' + g.epoch);
  if (g.suite) parts.push(g.suite);
  if (g.multicast) parts.push(g.multicast);
  if (g.rate_mbps !== null && g.rate_mbps !== undefined) parts.push('sending rate ' + g.rate_mbps + ' Mbit/s');
  $('state').textContent = parts.join(' · ');
}

function onMembers(m) {
  const room = $('room');
  room.replaceChildren();
  const users = [];
  for (const o of m.room) {
    const li = el('li', 'member', o.keyserver ? o.name + ' (key server)' : o.name);
    li.dataset.user = o.user;
    li.dataset.nick = o.nick;
    room.appendChild(li);
    if (!o.keyserver && o.nick !== state.nick && o.user !== state.nick) users.push(o.user);
  }
  const heard = $('heard');
  const down = Array.isArray(m.multicast);
  heard.hidden = !down;
  $('heard-title').hidden = !down;
  heard.replaceChildren();
  if (down) {
    for (const n of m.multicast) {
      const li = el('li', 'member heard', n);
      li.dataset.nick = n;
      heard.appendChild(li);
      if (n !== state.nick && !users.includes(n)) users.push(n);
    }
  }
  state.users = users;
  drawRecipients();
}

function drawRecipients() {
  const list = $('to-list');
  list.replaceChildren();
  for (const u of state.users) {
    const label = el('label');
    const box = el('input');
    box.type = 'checkbox';
    box.value = u;
    box.className = 'to';
    box.checked = state.chosen.has(u);
    box.addEventListener('change', () => {
      if (box.checked) state.chosen.add(u); else state.chosen.delete(u);
      hint();
    });
    label.appendChild(box);
    label.appendChild(document.createTextNode(' ' + u));
    list.appendChild(label);
  }
  for (const u of [...state.chosen]) if (!state.users.includes(u)) state.chosen.delete(u);
  hint();
}

function hint() {
  $('to-hint').textContent = state.chosen.size ? 'only the chosen members' : 'everyone';
}

function fileViews(f) {
  let v = state.files.get(f.id);
  if (!v) {
    const side = el('li', 'file');
    const entry = el('li', 'file');
    v = { side, entry, shown: false };
    state.files.set(f.id, v);
    $('files').appendChild(side);
    say(entry);
  }
  return v;
}

function fileLine(f) {
  const who = f.dir === 'out' ? 'you' : (f.from || 'someone');
  const to = f.to && f.to.length ? ' to ' + f.to.join(', ') : '';
  const words = { queued: 'queued', sending: 'sending', sent: 'sent', receiving: 'receiving', received: 'received', failed: 'failed' };
  let line = who + to + ': ' + (f.name || 'a file') + ' · ' + (words[f.state] || f.state) + ' ' + (f.progress || 0) + '%';
  if (f.delivered && f.delivered.length) line += ' · ' + f.delivered.map((u) => u + ' has it').join(', ');
  if (f.why) line += ' · ' + f.why;
  return line;
}

function fill(li, f) {
  li.dataset.id = f.id;
  li.dataset.state = f.state;
  li.dataset.progress = f.progress || 0;
  li.dataset.kind = f.kind || '';
  let meta = li.querySelector('.meta');
  let bar = li.querySelector('progress');
  if (!meta) {
    meta = el('div', 'meta');
    bar = el('progress');
    bar.max = 100;
    li.appendChild(meta);
    li.appendChild(bar);
  }
  meta.textContent = fileLine(f);
  bar.value = f.progress || 0;
}

function show(v, f) {
  const done = (f.dir === 'in' && f.state === 'received') || (f.dir === 'out' && f.state !== 'failed');
  if (v.shown || !done || !f.kind) return;
  v.shown = true;
  const url = '/files/' + encodeURIComponent(f.id);
  const fig = el('figure');
  if (f.kind === 'image') {
    const img = el('img', 'shown');
    img.alt = f.name || 'image';
    // When it showed, beside when the member verified it (bench/web).
    img.addEventListener('load', () => { img.dataset.loadedMs = Date.now(); img.dataset.verifiedMs = f.verified_ms || ''; });
    img.src = url;
    fig.appendChild(img);
  } else if (f.kind === 'pdf' || f.kind === 'text') {
    const frame = el('iframe', 'shown');
    frame.title = f.name || f.kind;
    frame.src = url;
    fig.appendChild(frame);
  }
  const a = el('a', 'download', f.kind === 'download' ? 'Download ' + (f.name || 'file') : 'Save');
  a.href = url + '?download=1';
  a.setAttribute('download', f.name || 'file');
  a.rel = 'noopener';
  fig.appendChild(a);
  scrolled(() => v.entry.appendChild(fig));
}

function onFile(f) {
  const v = fileViews(f);
  fill(v.side, f);
  fill(v.entry, f);
  show(v, f);
}

// The last position of each member (and each TAK unit a bridge relays),
// with its age, redrawn every few seconds; a geo: link opens it in the
// device's map application.
function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120 ? s + ' s ago' : Math.round(s / 60) + ' min ago';
}

function drawPositions() {
  const list = $('positions');
  list.replaceChildren();
  for (const p of state.positions) {
    const li = el('li', 'position' + (p.own ? ' own' : ''));
    li.dataset.who = p.who;
    li.appendChild(el('span', 'from', p.who));
    const where = Number(p.lat).toFixed(5) + ', ' + Number(p.lon).toFixed(5);
    const a = el('a', 'where', where);
    a.setAttribute('href', 'geo:' + Number(p.lat) + ',' + Number(p.lon));
    li.appendChild(a);
    if (p.accuracy_m !== null && p.accuracy_m !== undefined) li.appendChild(el('span', 'tag', '±' + Math.round(p.accuracy_m) + ' m'));
    li.appendChild(el('span', 'tag age', ago(p.at_ms)));
    if (p.via) li.appendChild(el('span', 'tag', 'via ' + p.via));
    list.appendChild(li);
  }
  const none = state.positions.length === 0;
  list.hidden = none;
  $('positions-title').hidden = none;
}

function onPositions(m) {
  state.positions = Array.isArray(m.list) ? m.list : [];
  drawPositions();
}

function onLeft() {
  state.left = true;
  for (const id of ['text', 'send', 'file', 'leave']) $(id).disabled = true;
}

function reset() {
  $('timeline').replaceChildren();
  $('files').replaceChildren();
  state.files.clear();
}

const handlers = { reset, chat: onChat, unreadable: onUnreadable, group: onGroup, members: onMembers, file: onFile, left: onLeft,
  positions: onPositions,
  notice: (n) => say(el('li', 'notice ' + (n.level || ''), n.text)) };

function connect() {
  const es = new EventSource('/events');
  es.onmessage = (e) => {
    let m;
    try { m = JSON.parse(e.data); } catch (_) { return; }
    const h = handlers[m.type];
    if (h) h(m);
  };
}

async function post(url, body, type) {
  const r = await fetch(url, { method: 'POST', body, headers: type ? { 'Content-Type': type } : {}, credentials: 'same-origin' });
  if (!r.ok) say(el('li', 'notice error', 'refused: ' + (await r.text())));
  return r;
}

function upload(file) {
  const to = [...state.chosen];
  const q = '?name=' + encodeURIComponent(file.name) + (to.length ? '&to=' + encodeURIComponent(to.join(',')) : '');
  const note = el('li', 'notice upload', 'uploading ' + file.name + ' 0%');
  say(note);
  const x = new XMLHttpRequest();
  x.open('POST', '/api/files' + q);
  x.upload.onprogress = (e) => {
    if (e.lengthComputable) note.textContent = 'uploading ' + file.name + ' ' + Math.floor((100 * e.loaded) / e.total) + '%';
  };
  x.onload = () => {
    if (x.status === 202) note.remove();
    else note.textContent = 'upload of ' + file.name + ' refused: ' + x.responseText;
  };
  x.onerror = () => { note.textContent = 'upload of ' + file.name + ' failed'; };
  x.send(file);
}

function start() {
  $('send-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('text');
    const text = t.value.trim();
    if (!text || state.left) return;
    t.value = '';
    post('/api/chat', JSON.stringify({ text, to: [...state.chosen] }), 'application/json');
  });
  $('file').addEventListener('change', (e) => {
    for (const f of e.target.files) upload(f);
    e.target.value = '';
  });
  $('leave').addEventListener('click', () => post('/api/leave', ''));
  $('members-toggle').addEventListener('click', () => document.body.classList.toggle('show-members'));
  let depth = 0;
  document.addEventListener('dragenter', (e) => { e.preventDefault(); depth++; document.body.classList.add('dragging'); $('drop').hidden = false; });
  document.addEventListener('dragleave', () => { if (--depth <= 0) { depth = 0; document.body.classList.remove('dragging'); $('drop').hidden = true; } });
  document.addEventListener('dragover', (e) => e.preventDefault());
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    depth = 0;
    document.body.classList.remove('dragging');
    $('drop').hidden = true;
    if (state.left) return;
    for (const f of e.dataTransfer.files) upload(f);
  });
  setInterval(drawPositions, 5000);
  connect();
}

document.addEventListener('DOMContentLoaded', start);
