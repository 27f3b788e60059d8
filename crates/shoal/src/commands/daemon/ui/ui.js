// The daemon's web page: the same JSON API as `shoal remote`, with the token kept in the
// browser. Text from torrents (names, paths, peers' clients) is anybody's: it only ever
// goes into the page as text, never as markup.
'use strict';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** Bytes as people read them: 1.5 MiB. */
function formatSize(bytes) {
  let value = Number(bytes) || 0;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

/** Seconds as h:mm:ss, or '' when unknown. */
function formatEta(secs) {
  if (secs === null || secs === undefined) return '';
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = Math.floor(secs % 60);
  const pad = (n) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

/** A .torrent's bytes in hex, as the API takes them. */
function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** File numbers as `get --select-file` writes them: [1, 2, 3, 5] is '1-3,5'; none is ''. */
function fileList(numbers) {
  const sorted = [...new Set(numbers)].sort((a, b) => a - b);
  const ranges = [];
  for (const n of sorted) {
    const last = ranges[ranges.length - 1];
    if (last && n === last[1] + 1) last[1] = n;
    else ranges.push([n, n]);
  }
  return ranges.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',');
}

/** What the API's `set` takes for a torrent's files, given which are wanted. */
function filesChoice(files, wanted) {
  const numbers = files.filter((f) => wanted.has(f.number)).map((f) => f.number);
  if (numbers.length === files.length) return 'all';
  return fileList(numbers);
}

/**
 * A limit box's value (KiB/s) as the API takes it (bytes/s, 0 for none); `undefined`
 * when the box is empty (no change).
 */
function limitOf(text) {
  const trimmed = String(text).trim();
  if (trimmed === '') return undefined;
  const kib = Number(trimmed);
  if (!Number.isFinite(kib) || kib < 0) throw new Error(`${trimmed} is not a rate`);
  return Math.round(kib * 1024);
}

/**
 * A seed limit box's value (a ratio, or minutes) as the API takes it: the number,
 * `none`, or (for a torrent) `session`; `undefined` when the box is empty (no change).
 */
function seedLimitOf(text, forTorrent) {
  const trimmed = String(text).trim().toLowerCase();
  if (trimmed === '') return undefined;
  if (trimmed === 'none' || (forTorrent && trimmed === 'session')) return trimmed;
  const n = Number(trimmed);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${trimmed} is not a seed limit`);
  return n;
}

/** The daemon's API at `base` ('' for this page's own server), with `token`. */
function client(base, token) {
  async function call(method, path, body) {
    const headers = { Authorization: `Bearer ${token}` };
    const init = { method, headers };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(base + path, init);
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(answer.error || `${response.status} ${response.statusText}`);
      error.status = response.status;
      throw error;
    }
    return answer;
  }
  const torrent = (id) => `/api/torrents/${encodeURIComponent(id)}`;
  return {
    session: () => call('GET', '/api/session'),
    setLimits: (limits) => call('POST', '/api/session', limits),
    list: () => call('GET', '/api/torrents').then((a) => a.torrents),
    show: (id) => call('GET', torrent(id)),
    add: (what) => call('POST', '/api/torrents', what),
    pause: (id) => call('POST', `${torrent(id)}/pause`, {}),
    resume: (id) => call('POST', `${torrent(id)}/resume`, {}),
    verify: (id) => call('POST', `${torrent(id)}/verify`, {}),
    reannounce: (id) => call('POST', `${torrent(id)}/reannounce`, {}),
    remove: (id, deleteData) => call('POST', `${torrent(id)}/remove`, { delete_data: deleteData }),
    set: (id, change) => call('POST', `${torrent(id)}/set`, change),
  };
}

if (typeof module !== 'undefined') {
  module.exports = { formatSize, formatEta, toHex, fileList, filesChoice, limitOf, seedLimitOf, client };
} else {
  document.addEventListener('DOMContentLoaded', start);
}

// The page.

const TOKEN_KEY = 'shoal-token';
const $ = (id) => document.getElementById(id);

/**
 * The connection to the daemon, once the token is known: the API, the torrent whose
 * details are shown, the files ticked there (and whether the user changed them).
 */
let view = null;

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function say(text) {
  $('message').textContent = text;
}

function start() {
  wire();
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) connect(token);
  else showLogin();
}

function showLogin(reason) {
  $('login').hidden = false;
  $('main').hidden = true;
  $('forget').hidden = true;
  $('limits').hidden = true;
  if (reason) $('login').querySelector('p').textContent = reason;
}

function connect(token) {
  if (view) clearInterval(view.timer);
  const api = client('', token);
  api.session().then(
    () => {
      view = { api, shown: null, detail: null, wanted: new Set(), touched: false };
      $('login').hidden = true;
      $('main').hidden = false;
      $('forget').hidden = false;
      $('limits').hidden = false;
      refresh();
      view.timer = setInterval(refresh, 2000);
    },
    (error) => showLogin(`Not connected: ${error.message}`),
  );
}

/** The page's controls, wired once; each acts on the current `view`. */
function wire() {
  $('login').addEventListener('submit', (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, $('token').value.trim());
    connect(localStorage.getItem(TOKEN_KEY));
  });
  $('forget').addEventListener('click', () => {
    localStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  $('add').addEventListener('submit', async (event) => {
    event.preventDefault();
    const what = { paused: $('paused').checked };
    const dir = $('dir').value.trim();
    if (dir) what.dir = dir;
    const file = $('file').files[0];
    const link = $('magnet').value.trim();
    try {
      if (file) {
        what.torrent = toHex(new Uint8Array(await file.arrayBuffer()));
      } else if (/^[0-9a-fA-F]{40}$/.test(link)) {
        what.magnet = `magnet:?xt=urn:btih:${link}`;
      } else if (link) {
        what.magnet = link;
      } else {
        say('Give a magnet link, an info-hash or a .torrent file.');
        return;
      }
      const added = await view.api.add(what);
      say(`Added ${added.info_hash}.`);
      $('add').reset();
      refresh();
    } catch (error) {
      say(`Not added: ${error.message}`);
    }
  });
  $('limits').addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const limits = {
        max_down: limitOf($('max-down').value),
        max_up: limitOf($('max-up').value),
        seed_ratio: seedLimitOf($('seed-ratio').value, false),
        seed_time: seedLimitOf($('seed-time').value, false),
      };
      await view.api.setLimits(limits);
      say('Limits set.');
      $('limits').reset();
      refresh();
    } catch (error) {
      say(`Limits not set: ${error.message}`);
    }
  });
  $('close').addEventListener('click', closeDetail);
  $('reannounce').addEventListener('click', async () => {
    const torrent = view.detail;
    if (!torrent) return;
    try {
      await view.api.reannounce(torrent.info_hash);
      say(`Asking the trackers of ${torrent.name}.`);
    } catch (error) {
      say(`Not asked: ${error.message}`);
    }
  });
  $('apply').addEventListener('click', async () => {
    const torrent = view.detail;
    if (!torrent) return;
    let change;
    try {
      const sequential = $('sequential').checked;
      change = {
        // Sent only when changed: a change of order restarts the torrent.
        sequential: sequential === torrent.sequential ? undefined : sequential,
        seed_ratio: seedLimitOf($('own-ratio').value, true),
        seed_time: seedLimitOf($('own-time').value, true),
        max_down: limitOf($('own-down').value),
        max_up: limitOf($('own-up').value),
      };
    } catch (error) {
      say(`Not changed: ${error.message}`);
      return;
    }
    // The files only if the user changed them: a list built from boxes drawn before
    // the metadata came would narrow the choice by mistake.
    if (view.touched && torrent.files) {
      const files = filesChoice(torrent.files, view.wanted);
      if (!files) {
        say('Choose at least one file.');
        return;
      }
      change.files = files;
    }
    try {
      await view.api.set(torrent.info_hash, change);
      view.touched = false;
      for (const box of ['own-ratio', 'own-time', 'own-down', 'own-up']) $(box).value = '';
      say(`Changed ${torrent.name}.`);
      refresh();
    } catch (error) {
      say(`Not changed: ${error.message}`);
    }
  });
}

function closeDetail() {
  view.shown = null;
  view.detail = null;
  $('detail').hidden = true;
}

async function refresh() {
  const current = view;
  // One at a time: a slow answer is not overtaken by the next.
  if (current.refreshing) return;
  current.refreshing = true;
  try {
    const [session, torrents] = await Promise.all([current.api.session(), current.api.list()]);
    const c = session.connections;
    $('session').textContent =
      `${session.torrents} torrents · ${c.open}/${c.limit} connections · port ${session.listen}`;
    const shown = (rate) => (rate === null ? 'no limit' : String(rate / 1024));
    $('max-down').placeholder = shown(session.max_down);
    $('max-up').placeholder = shown(session.max_up);
    $('seed-ratio').placeholder = String(session.seed_ratio);
    $('seed-time').placeholder = String(session.seed_time);
    showTorrents(torrents);
    const id = current.shown;
    if (id) {
      const torrent = await current.api.show(id).catch((error) => {
        if (error.status === 404) return null;
        throw error;
      });
      // Drawn only if it is still the one asked for.
      if (current.shown === id) {
        if (torrent) showDetail(torrent);
        else closeDetail();
      }
    }
  } catch (error) {
    if (error.status === 401) {
      clearInterval(current.timer);
      localStorage.removeItem(TOKEN_KEY);
      showLogin('The token was refused; give it again.');
    }
    say(`The daemon did not answer: ${error.message}`);
  } finally {
    current.refreshing = false;
  }
}

function showTorrents(torrents) {
  const rows = torrents.map((t) => {
    const row = element('tr');
    const name = element('td', t.name, 'name');
    name.title = t.info_hash;
    name.addEventListener('click', () => open(t.info_hash));
    const done = element('td');
    const bar = element('progress');
    bar.max = 1;
    bar.value = t.progress ?? 0;
    done.append(bar, ` ${((t.progress ?? 0) * 100).toFixed(1)}%`);
    const s = t.status;
    const state = s.state.replace('_', ' ');
    row.append(
      name,
      element('td', s.error ? `${state}: ${s.error}` : state, 'state'),
      done,
      element('td', t.size === null ? '' : formatSize(t.size), 'num'),
      element('td', `${formatSize(s.download_rate)}/s`, 'num'),
      element('td', `${formatSize(s.upload_rate)}/s`, 'num'),
      element('td', String(s.peers), 'num'),
      element('td', formatEta(s.eta_secs), 'num'),
      element('td', t.ratio === null ? '' : t.ratio.toFixed(2), 'num'),
      actions(t),
    );
    return row;
  });
  $('torrents').replaceChildren(...rows);
}

function actions(t) {
  const cell = element('td');
  const button = (label, act) => {
    const b = element('button', label);
    b.type = 'button';
    b.addEventListener('click', async () => {
      try {
        await act();
        refresh();
      } catch (error) {
        say(`${label}: ${error.message}`);
      }
    });
    cell.append(b);
  };
  const stopped = ['paused', 'finished', 'error'].includes(t.status.state);
  if (stopped) button('Resume', () => view.api.resume(t.info_hash));
  else button('Pause', () => view.api.pause(t.info_hash));
  // Its data is known once its metadata is.
  if (t.size !== null) button('Verify', () => view.api.verify(t.info_hash));
  button('Remove', async () => {
    if (!confirm(`Remove ${t.name}?`)) return;
    const deleteData = confirm(`Delete the downloaded files of ${t.name} too?`);
    await view.api.remove(t.info_hash, deleteData);
    if (view.shown === t.info_hash) closeDetail();
  });
  return cell;
}

async function open(id) {
  view.shown = id;
  view.detail = null;
  try {
    const torrent = await view.api.show(id);
    if (view.shown === id) showDetail(torrent);
  } catch (error) {
    say(error.message);
  }
}

/**
 * One torrent's files and peers. The boxes start from what it fetches, the first time
 * its files are known; after that they keep the user's ticks.
 */
function showDetail(torrent) {
  const first = view.detail === null || view.detail.info_hash !== torrent.info_hash;
  const filesCame = !first && !view.detail.files && torrent.files;
  if (first) $('sequential').checked = torrent.sequential;
  if (first || filesCame) {
    view.wanted = new Set((torrent.files || []).filter((f) => f.wanted).map((f) => f.number));
    view.touched = false;
  }
  view.detail = torrent;
  $('own-ratio').placeholder = String(torrent.seed_ratio);
  $('own-time').placeholder = String(torrent.seed_time);
  const own = (rate) => (rate === null ? 'none' : String(rate / 1024));
  $('own-down').placeholder = own(torrent.max_down);
  $('own-up').placeholder = own(torrent.max_up);
  $('detail').hidden = false;
  $('detail-name').textContent = torrent.name;
  const rows = (torrent.files || []).map((f) => {
    const box = element('input');
    box.type = 'checkbox';
    box.checked = view.wanted.has(f.number);
    box.addEventListener('change', () => {
      if (box.checked) view.wanted.add(f.number);
      else view.wanted.delete(f.number);
      view.touched = true;
    });
    const want = element('td');
    want.append(box);
    const done = f.size === 0 ? 100 : (100 * f.have) / f.size;
    const row = element('tr');
    row.append(
      want,
      element('td', String(f.number), 'num'),
      element('td', f.path, 'name'),
      element('td', formatSize(f.size), 'num'),
      element('td', `${done.toFixed(1)}%`, 'num'),
    );
    return row;
  });
  $('files').replaceChildren(...rows);
  const peers = (torrent.peers || []).map((p) =>
    element(
      'li',
      `${p.addr} ${p.client || ''} ↓${formatSize(p.download_rate || 0)}/s ↑${formatSize(p.upload_rate || 0)}/s`,
    ),
  );
  $('peers').replaceChildren(...peers);
  const trackers = (torrent.trackers || []).map((t) => {
    const counts = t.answered_at ? `${t.seeders ?? '?'} seeders, ${t.leechers ?? '?'} leechers` : 'no answer yet';
    return element('li', `${t.url}: ${counts}${t.message ? ` (${t.message})` : ''}`);
  });
  $('trackers').replaceChildren(...trackers);
}
