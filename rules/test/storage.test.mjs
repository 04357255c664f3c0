// storage.rules under Google's Storage emulator: no client SDK reaches the snapshot bucket.
//
// The snapshots hold personal data and are read only by the functions (service account, not
// governed by these rules). Run with `python -m rules.run`.

import { after, before, beforeEach, test } from 'node:test';
import { readFileSync } from 'node:fs';
import {
  assertFails, initializeTestEnvironment,
} from '@firebase/rules-unit-testing';

const PROJECT = 'demo-rules-test';
const rules = readFileSync(new URL('../../storage.rules', import.meta.url), 'utf8');
const OBJECTS = ['snapshots/users.json', 'snapshots/jobs.json', 'legacy/users.json', 'other/x.txt'];

let env;

before(async () => {
  env = await initializeTestEnvironment({ projectId: PROJECT, storage: { rules } });
});

after(async () => {
  await env?.cleanup();
});

beforeEach(async () => {
  await env.clearStorage();
  await env.withSecurityRulesDisabled(async (context) => {
    for (const path of OBJECTS) {
      await context.storage().ref(path).putString('{"items": []}', 'raw', { contentType: 'application/json' });
    }
  });
});

const contexts = {
  anonymous: () => env.unauthenticatedContext(),
  signedIn: () => env.authenticatedContext('alice'),
  admin: () => env.authenticatedContext('root', { admin: true }),
};

for (const [who, make] of Object.entries(contexts)) {
  test(`${who}: cannot read, list, write or delete any object`, async () => {
    const storage = make().storage();
    for (const path of OBJECTS) {
      const ref = storage.ref(path);
      await assertFails(ref.getDownloadURL());
      await assertFails(ref.getMetadata());
      await assertFails(ref.putString('{"items": [{"id": "forged"}]}', 'raw'));
      await assertFails(ref.updateMetadata({ cacheControl: 'public, max-age=3600' }));
      await assertFails(ref.delete());
    }
    await assertFails(storage.ref('snapshots').listAll());
    await assertFails(storage.ref('new/object.json').putString('{}', 'raw'));
  });
}
