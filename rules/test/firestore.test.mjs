// firestore.rules under Google's Firestore emulator: every allow and every deny path.
//
// Run with `python -m rules.run` (it checks that the emulator is Google's, which enforces
// rules). The documents come from rules/test/cases.json, generated from schemas/*.schema.json
// by `python -m rules.generate`: for each configured collection a valid document, a minimal
// one, one at every bound, and one invalid variant per constraint the rules enforce.

import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  assertFails, assertSucceeds, initializeTestEnvironment,
} from '@firebase/rules-unit-testing';
import firebase from 'firebase/compat/app';
import 'firebase/compat/firestore';

const PROJECT = 'demo-rules-test';
const rules = readFileSync(new URL('../../firestore.rules', import.meta.url), 'utf8');
const cases = JSON.parse(readFileSync(new URL('./cases.json', import.meta.url), 'utf8'));
const collections = Object.entries(cases.collections);

// Collections the backend keeps for itself (plus guesses at future ones): no client may touch
// them, admins included. Deny-by-default covers any name; these make the point explicit.
const INTERNAL = ['migrations', 'migration_runs', '_migration_progress',
  '_tombstones', 'tombstones', '_publisher', 'publisher_state', '_snapshots', '_meta',
  '_internal', 'config', 'admins'];

const { FieldValue, Timestamp } = firebase.firestore;
// Every deny path makes the SDK log its PERMISSION_DENIED: the assertions say what matters.
firebase.firestore.setLogLevel('silent');

// cases.json markers -> Firestore values.
function materialize(value) {
  if (Array.isArray(value)) return value.map(materialize);
  if (value && typeof value === 'object') {
    if (value.$serverTime) return FieldValue.serverTimestamp();
    if (value.$delete) return FieldValue.delete();
    if (typeof value.$timestamp === 'string') return Timestamp.fromDate(new Date(value.$timestamp));
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, materialize(v)]));
  }
  return value;
}

let env;
const db = {};

before(async () => {
  env = await initializeTestEnvironment({ projectId: PROJECT, firestore: { rules } });
  db.anonymous = env.unauthenticatedContext().firestore();
  db.signedIn = env.authenticatedContext('alice', { email: 'alice@example.com', email_verified: true }).firestore();
  db.anonymousProvider = env.authenticatedContext('anon', { firebase: { sign_in_provider: 'anonymous' } }).firestore();
  db.adminFalse = env.authenticatedContext('bob', { admin: false }).firestore();
  db.adminString = env.authenticatedContext('eve', { admin: 'true' }).firestore();
  db.adminNumber = env.authenticatedContext('mallory', { admin: 1 }).firestore();
  db.admin = env.authenticatedContext('root', { admin: true, email: 'root@example.com' }).firestore();
  // The suite means nothing on an emulator without a rules engine: stop at once there.
  await assertFails(db.anonymous.collection('__canary').doc('x').set({ a: 1 }));
});

after(async () => {
  await env?.cleanup();
});

beforeEach(async () => {
  await env.clearFirestore();
  await env.withSecurityRulesDisabled(async (context) => {
    const seeded = context.firestore();
    for (const [name, spec] of collections) {
      await seeded.collection(name).doc('existing').set(materialize(spec.stored));
    }
    for (const name of [...INTERNAL, '_migrations']) {
      await seeded.collection(name).doc('existing').set({ secret: true });
    }
    await seeded.collection('_migrations').doc('existing').collection('batches').doc('0').set({ secret: true });
    for (const name of [...collections.map(([collection]) => collection), 'unknown']) {
      await seeded.collection('_tombstones').doc(name).set({ secret: true });
      await seeded.collection('_tombstones').doc(name).collection('ids').doc('gone').set(TOMBSTONE);
      await seeded.collection('_tombstones').doc(name).collection('ids').doc('gone')
        .collection('deeper').doc('x').set({ secret: true });
    }
    await seeded.collection('users').doc('existing').collection('private').doc('p').set({ secret: true });
  });
});

// A tombstone as the backend writes it (shared/tombstones.py).
const TOMBSTONE = {
  id: 'gone',
  deletedAt: Timestamp.fromDate(new Date('2024-05-01T12:00:00Z')),
  recordedAt: Timestamp.fromDate(new Date('2024-05-01T12:00:01Z')),
  expireAt: Timestamp.fromDate(new Date('2024-05-31T12:00:00Z')),
};

const NOT_ADMINS = ['anonymous', 'signedIn', 'anonymousProvider', 'adminFalse', 'adminString', 'adminNumber'];

for (const [name, spec] of collections) {
  describe(`${name} (${spec.schema})`, () => {
    for (const who of NOT_ADMINS) {
      test(`${who}: every read and write is denied`, async () => {
        const col = db[who].collection(name);
        await assertFails(col.doc('existing').get());
        await assertFails(col.get());
        await assertFails(col.where('updatedAt', '>', Timestamp.fromDate(new Date(0))).get());
        await assertFails(col.doc('new').set(materialize(spec.valid)));
        await assertFails(col.doc('existing').update(materialize(spec.validUpdates[0].data)));
        await assertFails(col.doc('existing').delete());
      });
    }

    test('admin: get, list and query are allowed', async () => {
      const col = db.admin.collection(name);
      const doc = await assertSucceeds(col.doc('existing').get());
      assert.equal(doc.exists, true);
      const all = await assertSucceeds(col.get());
      assert.equal(all.size, 1);
      await assertSucceeds(col.where('updatedAt', '>', Timestamp.fromDate(new Date(0))).limit(10).get());
      await assertSucceeds(col.doc('missing').get());
    });

    for (const [label, data] of [['valid', spec.valid], ['minimal', spec.minimal], ['at every bound', spec.atBounds]]) {
      test(`admin: create of a ${label} document is allowed`, async () => {
        await assertSucceeds(db.admin.collection(name).doc(`new-${label.replace(/ /g, '-')}`).set(materialize(data)));
      });
    }

    for (const item of spec.invalidCreates) {
      test(`admin: create denied: ${item.why}`, async () => {
        await assertFails(db.admin.collection(name).doc('new').set(materialize(item.data)));
      });
    }

    for (const item of spec.validUpdates) {
      test(`admin: update allowed: ${item.why}`, async () => {
        await assertSucceeds(db.admin.collection(name).doc('existing').update(materialize(item.data)));
      });
    }

    for (const item of spec.invalidUpdates) {
      test(`admin: update denied: ${item.why}`, async () => {
        await assertFails(db.admin.collection(name).doc('existing').update(materialize(item.data)));
      });
    }

    test('admin: replacing a document with set() cannot reset createdAt', async () => {
      await assertFails(db.admin.collection(name).doc('existing').set(materialize(spec.valid)));
    });

    test('admin: a merge that keeps createdAt and refreshes updatedAt is allowed', async () => {
      const { createdAt, ...rest } = spec.valid;
      await assertSucceeds(db.admin.collection(name).doc('existing').set(materialize(rest), { merge: true }));
    });

    test('admin: delete is allowed', async () => {
      await assertSucceeds(db.admin.collection(name).doc('existing').delete());
    });

    test('admin: subcollections are closed', async () => {
      const sub = db.admin.collection(name).doc('existing').collection('private');
      await assertFails(sub.doc('p').get());
      await assertFails(sub.get());
      await assertFails(sub.doc('q').set({ a: 1 }));
    });
  });
}

describe('internal and unknown collections', () => {
  test('_migrations: run documents readable by admins only, written by nobody', async () => {
    await assertSucceeds(db.admin.collection('_migrations').doc('existing').get());
    await assertSucceeds(db.admin.collection('_migrations').get());
    for (const who of NOT_ADMINS) {
      await assertFails(db[who].collection('_migrations').doc('existing').get());
    }
    for (const who of ['anonymous', 'signedIn', 'admin']) {
      const runs = db[who].collection('_migrations');
      await assertFails(runs.doc('new').set({ a: 1 }));
      await assertFails(runs.doc('existing').update({ secret: false }));
      await assertFails(runs.doc('existing').delete());
      await assertFails(runs.doc('existing').collection('batches').doc('0').get());
    }
  });

  // Live mode (web/data-client.js) listens to `recordedAt > t` on a collection's tombstones.
  for (const [name] of collections) {
    test(`_tombstones/${name}/ids: admins may get, list and listen; nobody writes`, async () => {
      const since = Timestamp.fromDate(new Date('2024-01-01T00:00:00Z'));
      const ids = (who) => db[who].collection('_tombstones').doc(name).collection('ids');
      const found = await assertSucceeds(ids('admin').where('recordedAt', '>', since).get());
      assert.deepEqual(found.docs.map((doc) => doc.id), ['gone']);
      await assertSucceeds(ids('admin').doc('gone').get());
      await assertSucceeds(ids('admin').get());
      for (const who of NOT_ADMINS) {
        await assertFails(ids(who).where('recordedAt', '>', since).get());
        await assertFails(ids(who).doc('gone').get());
      }
      for (const who of ['anonymous', 'signedIn', 'admin']) {
        await assertFails(ids(who).doc('new').set(TOMBSTONE));
        await assertFails(ids(who).doc('gone').update({ recordedAt: since }));
        await assertFails(ids(who).doc('gone').delete());
      }
      await assertFails(db.admin.collection('_tombstones').doc(name).get());
      await assertFails(ids('admin').doc('gone').collection('deeper').doc('x').get());
    });
  }

  test('_tombstones of a collection without a schema: closed, admins included', async () => {
    const ids = db.admin.collection('_tombstones').doc('unknown').collection('ids');
    await assertFails(ids.doc('gone').get());
    await assertFails(ids.get());
    await assertFails(db.admin.collectionGroup('ids').get());
  });

  for (const name of INTERNAL) {
    test(`${name}: closed to everyone, admins included`, async () => {
      for (const who of ['anonymous', 'signedIn', 'admin']) {
        const col = db[who].collection(name);
        await assertFails(col.doc('existing').get());
        await assertFails(col.get());
        await assertFails(col.doc('new').set({ a: 1 }));
        await assertFails(col.doc('existing').update({ secret: false }));
        await assertFails(col.doc('existing').delete());
      }
    });
  }

  test('collection group queries over every collection are closed', async () => {
    await assertFails(db.admin.collectionGroup('private').get());
    await assertFails(db.anonymous.collectionGroup('users').get());
  });
});
