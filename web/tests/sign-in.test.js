// Unit tests of what sign-in changed in the page's modules: the transport's token from an
// injected Firebase Auth instance, the sentences a viewer reads, counts of one.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { userRow } from '../admin/status-page.js';
import { createTransport } from '../client/transport.js';
import { grantCommand, liveOffSentence, viewerSentence } from '../ui/explain.js';
import { countOf } from '../ui/format.js';

/** A stand-in for a Firebase Auth instance: the one property the transport reads. */
function fakeAuth(user) {
  return { currentUser: user };
}

describe('transport with an Auth instance', () => {
  test('sends the signed-in user\'s token, and a forced fresh one after a 401', async () => {
    const asked = [];
    const user = { getIdToken: async (force) => { asked.push(force); return force ? 'fresh' : 'cached'; } };
    const sent = [];
    const transport = createTransport({
      auth: fakeAuth(user),
      fetch: async (url, init) => {
        sent.push(init.headers.Authorization);
        return new Response('{}', { status: sent.length === 1 ? 401 : 200 });
      },
    });
    const response = await transport.send('http://api/users');
    assert.equal(response.status, 200);
    assert.deepEqual(sent, ['Bearer cached', 'Bearer fresh']);
    assert.deepEqual(asked, [false, true]);
  });

  test('sends no Authorization header while nobody is signed in', async () => {
    const sent = [];
    const transport = createTransport({
      auth: fakeAuth(null),
      fetch: async (url, init) => { sent.push(init.headers.Authorization); return new Response('{}'); },
    });
    await transport.send('http://api/users');
    assert.deepEqual(sent, [undefined]);
  });
});

describe('what a viewer reads', () => {
  test('the exact grant command, with their email', () => {
    assert.equal(grantCommand('v@example.com'), 'python -m ops admin grant v@example.com');
    assert.match(viewerSentence('v@example.com', 'migrate'),
      /without the admin claim: .* but not migrate\. .*python -m ops admin grant v@example\.com$/);
  });

  test('a rules refusal of the listeners is a sentence, not the rules engine\'s words', () => {
    const refused = { code: 'live_permission_denied', message: "live updates stopped: Property admin is undefined on object. for 'list' @ L73",
      cause: { code: 'permission-denied' } };
    assert.match(liveOffSentence(refused), /only admins may listen/);
    assert.doesNotMatch(liveOffSentence(refused), /Property admin/);
    assert.equal(liveOffSentence(new Error('Firestore cannot be reached')), 'Firestore cannot be reached');
  });

  test('the status page\'s user row: who, how, their custom claims; no backend call for a viewer', () => {
    const claims = { email: 'v@example.com', sub: 'uid-v', firebase: { sign_in_provider: 'password' }, iat: 1, exp: 2 };
    const row = userRow(claims, { skipped: true });
    assert.equal(row.state, 'warn');
    assert.match(row.text, /v@example\.com, uid-v \(signed in with password\) · custom claims: none/);
    assert.match(row.text, /python -m ops admin grant v@example\.com/);
    const admin = userRow({ ...claims, admin: true }, { principal: { admin: true, uid: 'uid-v' } });
    assert.equal(admin.state, 'ok');
    assert.match(admin.text, /custom claims: admin: true/);
  });
});

test('one record is "1 record"', () => {
  assert.equal(countOf(1, 'record'), '1 record');
  assert.equal(countOf(2400, 'record'), '2,400 records');
  assert.equal(countOf(0, 'record'), '0 records');
});
