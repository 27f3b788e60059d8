// The daemon's web page in jsdom, loaded from a running daemon and driven as a user
// would: the token typed in, a .torrent chosen and a magnet link pasted, a file
// unticked, a torrent resumed, paused and removed. Arguments: the daemon's base URL,
// its token, a .torrent file of three files. Needs jsdom (Debian's node-jsdom).
'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { JSDOM } = require('jsdom');

const [base, token, torrentPath] = process.argv.slice(2);
const torrentBytes = fs.readFileSync(torrentPath);

let said = () => '';

async function until(what, test, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = test();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (page says: ${said()})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function main() {
  const dom = await JSDOM.fromURL(`${base}/`, {
    runScripts: 'dangerously',
    resources: 'usable',
    pretendToBeVisual: true,
    beforeParse(window) {
      // jsdom has no fetch of its own: node's, resolving the page's relative paths.
      window.fetch = (url, init) => fetch(new URL(url, base), init);
      window.confirm = () => true;
    },
  });
  const { window } = dom;
  const doc = window.document;
  const $ = (id) => doc.getElementById(id);
  said = () => $('message').textContent;
  const submit = (form) =>
    form.dispatchEvent(new window.Event('submit', { bubbles: true, cancelable: true }));
  const rows = () => Array.from($('torrents').querySelectorAll('tr'));
  const row = (name) => rows().find((r) => r.querySelector('td.name').textContent === name);
  const button = (r, label) =>
    Array.from(r.querySelectorAll('button')).find((b) => b.textContent === label);

  await until('the token form', () => !$('login').hidden);
  assert.equal($('main').hidden, true);
  $('token').value = token;
  submit($('login'));
  await until('the torrent list', () => !$('main').hidden && /torrents/.test($('session').textContent));
  assert.equal(window.localStorage.getItem('shoal-token'), token);

  // The session's limits, in KiB/s.
  $('max-down').value = '512';
  submit($('limits'));
  await until('the limit', () => $('max-down').placeholder === '512');
  assert.equal($('max-up').placeholder, 'no limit');
  $('max-down').value = '0';
  submit($('limits'));
  await until('no limit', () => $('max-down').placeholder === 'no limit');
  // And how long torrents seed.
  assert.equal($('seed-ratio').placeholder, 'none');
  $('seed-ratio').value = '2.5';
  submit($('limits'));
  await until('the seed ratio', () => $('seed-ratio').placeholder === '2.5');
  assert.equal($('seed-time').placeholder, 'none');

  // A .torrent chosen in the file box, added paused.
  const fileBox = $('file');
  Object.defineProperty(fileBox, 'files', {
    configurable: true,
    value: [{ arrayBuffer: async () => new Uint8Array(torrentBytes).buffer }],
  });
  $('paused').checked = true;
  submit($('add'));
  await until('the answer', () => /^Added [0-9a-f]{40}\.$/.test($('message').textContent));
  const album = await until('the album', () => row('album'));
  assert.equal(album.children[1].textContent, 'paused');
  Object.defineProperty(fileBox, 'files', { configurable: true, value: [] });

  // A magnet link whose name is markup: shown as text, never made into elements.
  const name = '<img src=x onerror="window.hacked=1">';
  const hash = 'c12fe1c06bba254a9dc9f519b335aa7c1367a8a2';
  $('magnet').value = `magnet:?xt=urn:btih:${hash}&dn=${encodeURIComponent(name)}`;
  $('paused').checked = true;
  submit($('add'));
  await until('the magnet link', () => row(name));
  assert.equal($('torrents').querySelector('img'), null);
  // Its detail pane too: the name as text, no files before its metadata.
  row(name).querySelector('td.name').click();
  await until('its pane', () => $('detail-name').textContent === name);
  assert.equal($('detail').querySelector('img'), null);
  assert.equal($('files').children.length, 0);
  $('close').click();
  assert.equal($('detail').hidden, true);
  assert.equal(window.hacked, undefined);

  // Its files: untick the first and last, apply.
  row('album').querySelector('td.name').click();
  await until('its files', () => $('files').querySelectorAll('input').length === 3);
  const boxes = Array.from($('files').querySelectorAll('input'));
  assert.deepEqual(boxes.map((b) => b.checked), [true, true, true]);
  for (const box of [boxes[0], boxes[2]]) {
    box.checked = false;
    box.dispatchEvent(new window.Event('change'));
  }
  $('sequential').checked = true;
  assert.equal($('own-ratio').placeholder, 'session');
  $('own-ratio').value = 'none';
  $('own-time').value = '90';
  assert.equal($('own-down').placeholder, 'none');
  $('own-down').value = '300';
  $('apply').click();
  await until('the change', () => /^Changed album\.$/.test($('message').textContent));
  const albumHash = row('album').querySelector('td.name').title;
  const shown = await (
    await fetch(`${base}/api/torrents/${albumHash}`, {
      headers: { Authorization: `Bearer ${token}` },
    })
  ).json();
  assert.equal(shown.files_selected, '2');
  assert.equal(shown.sequential, true);
  assert.equal(shown.seed_ratio, 'none');
  assert.equal(shown.seed_time, 90);
  assert.equal(shown.seed_limit.seed_ratio, 'none');
  assert.equal(shown.max_down, 300 * 1024);
  assert.equal(shown.max_up, null);

  // Verify (paused, it stays paused), resume, pause, remove.
  assert.equal(button(row(name), 'Verify'), undefined, 'no data to verify before the metadata');
  button(row('album'), 'Verify').click();
  await until('checked', () => row('album').children[1].textContent === 'paused' && button(row('album'), 'Resume'));
  button(row('album'), 'Resume').click();
  await until('resumed', () => button(row('album'), 'Pause'));
  button(row('album'), 'Pause').click();
  await until('paused', () => button(row('album'), 'Resume'));
  button(row('album'), 'Remove').click();
  await until('removed', () => !row('album'));
  assert.equal(rows().length, 1);

  window.close();
}

main().then(
  () => {
    console.log('PAGE OK');
    process.exit(0);
  },
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
