// The daemon's web page's script, under node: its helpers, then its API client against
// a running daemon. Arguments: the script's path, the daemon's base URL, its token, a
// .torrent file of two or more files.
'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');

const [script, base, token, torrentPath] = process.argv.slice(2);
const ui = require(script);

function helpers() {
  assert.equal(ui.formatSize(0), '0 B');
  assert.equal(ui.formatSize(1536), '1.5 KiB');
  assert.equal(ui.formatSize(3 * 1024 ** 3), '3.0 GiB');
  assert.equal(ui.formatEta(null), '');
  assert.equal(ui.formatEta(75), '1:15');
  assert.equal(ui.formatEta(3725), '1:02:05');
  assert.equal(ui.toHex(new Uint8Array([0, 15, 255])), '000fff');
  assert.equal(ui.fileList([5, 1, 2, 3, 3]), '1-3,5');
  assert.equal(ui.fileList([]), '');
  const files = [{ number: 1 }, { number: 2 }, { number: 3 }];
  assert.equal(ui.filesChoice(files, new Set([1, 2, 3])), 'all');
  assert.equal(ui.filesChoice(files, new Set([3, 1])), '1,3');
  assert.equal(ui.filesChoice(files, new Set()), '');
  assert.equal(ui.limitOf(''), undefined);
  assert.equal(ui.limitOf(' 512 '), 524288);
  assert.equal(ui.limitOf('0'), 0);
  assert.throws(() => ui.limitOf('-1'));
  assert.equal(ui.seedLimitOf('', true), undefined);
  assert.equal(ui.seedLimitOf(' 1.5 ', false), 1.5);
  assert.equal(ui.seedLimitOf('None', false), 'none');
  assert.equal(ui.seedLimitOf('session', true), 'session');
  assert.throws(() => ui.seedLimitOf('session', false));
  assert.throws(() => ui.seedLimitOf('-2', true));
}

async function againstTheDaemon() {
  const api = ui.client(base, token);
  const session = await api.session();
  assert.equal(typeof session.connections.limit, 'number');
  const limited = await api.setLimits({ max_up: 65536 });
  assert.equal(limited.max_up, 65536);
  assert.equal(limited.max_down, null);
  assert.equal((await api.setLimits({ max_up: 0 })).max_up, null);
  const hex = ui.toHex(fs.readFileSync(torrentPath));
  const added = await api.add({ torrent: hex, paused: true });
  const id = added.info_hash;
  let listed = await api.list();
  assert.deepEqual(listed.map((t) => t.info_hash), [id]);
  assert.equal(listed[0].status.state, 'paused');

  const shown = await api.show(id.slice(0, 8));
  assert.ok(shown.files.length >= 2, JSON.stringify(shown));
  assert.ok(shown.files.every((f) => f.wanted));
  const choice = ui.filesChoice(shown.files, new Set([2]));
  await api.set(id, { files: choice, sequential: true });
  const changed = await api.show(id);
  assert.equal(changed.files_selected, '2');
  assert.equal(changed.sequential, true);
  assert.equal(changed.seed_ratio, 'session');
  // A refused limit changes nothing.
  await assert.rejects(api.set(id, { seed_ratio: -1 }), (e) => e.status === 400);
  await assert.rejects(api.setLimits({ seed_ratio: 'session' }), (e) => e.status === 400);
  await api.set(id, { seed_ratio: 3 });
  assert.equal((await api.show(id)).seed_ratio, 3);
  assert.deepEqual(changed.files.map((f) => f.wanted), shown.files.map((f) => f.number === 2));

  // Paused: no trackers to ask.
  await assert.rejects(api.reannounce(id), (e) => e.status === 400 && /not running/.test(e.message));
  await api.verify(id);
  await api.resume(id);
  listed = await api.list();
  assert.notEqual(listed[0].status.state, 'paused');
  await api.pause(id);

  // Refusals come back as errors with the daemon's reason and status.
  await assert.rejects(api.add({ torrent: 'zz' }), (e) => e.status === 400 && /hex/.test(e.message));
  await assert.rejects(api.show('ffff'), (e) => e.status === 404);
  await assert.rejects(ui.client(base, 'wrong').list(), (e) => e.status === 401);

  await api.remove(id, false);
  assert.deepEqual(await api.list(), []);
}

helpers();
againstTheDaemon().then(
  () => console.log('UI OK'),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
