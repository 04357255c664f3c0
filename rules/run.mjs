#!/usr/bin/env node
// Runs the security-rules tests (rules/test/*.test.mjs, node's test runner) under Google's
// Firestore and Storage emulators, the only place Google's rules engine runs offline.
//
//   node rules/run.mjs      (from the repository root; `make rules-test` does the same)
//
// With FIRESTORE_EMULATOR_HOST (and FIREBASE_STORAGE_EMULATOR_HOST) set, the tests use those
// emulators after checking that they enforce security rules. Otherwise this starts them with
// `firebase emulators:exec --only firestore,storage`, which needs the Firebase CLI
// (firebase-tools, not pinned here: an optional tool), Java 21 or newer, and the emulators'
// jars (`firebase setup:emulators:firestore` and `:storage` download them).
//
// Where any of that is missing the suite is NOT RUN: this says so plainly and exits with
// status 77, so a missing emulator is never reported as passed (nor as a test failure).

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const NOT_RUN = 77;
const MIN_JAVA = 21;
const here = dirname(fileURLToPath(import.meta.url));
const repo = dirname(here);
const testDir = join(here, 'test');
const files = readdirSync(testDir)
  .filter((name) => name.endsWith('.test.mjs'))
  .sort()
  .map((name) => relative(repo, join(testDir, name)));

function notRun(reasons, hints = []) {
  console.error('');
  console.error('RULES TESTS NOT RUN: Google\'s emulators are not available here.');
  for (const reason of reasons) console.error(`  - ${reason}`);
  for (const hint of hints) console.error(`  hint: ${hint}`);
  console.error('Nothing was tested: this is not a pass.');
  process.exit(NOT_RUN);
}

function runTests(env) {
  console.log(`running ${files.length} rules test file(s): ${files.join(' ')}`);
  const result = spawnSync(process.execPath, ['--test', ...files], {
    cwd: repo, env, stdio: 'inherit',
  });
  process.exit(result.status ?? 1);
}

// Google's emulator answers a rules upload and then refuses an unauthenticated read under a
// deny-all ruleset; an emulator without a rules engine (such as the npm one the local stack
// uses) fails one of the two.
async function enforcesRules(host) {
  const project = 'demo-rules-probe';
  const base = `http://${host}`;
  const rules = "rules_version = '2';\nservice cloud.firestore {\n  match /databases/{d}/documents {\n    match /{doc=**} { allow read, write: if false; }\n  }\n}\n";
  try {
    const upload = await fetch(`${base}/emulator/v1/projects/${project}:securityRules`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ rules: { files: [{ name: 'firestore.rules', content: rules }] } }),
      signal: AbortSignal.timeout(5000),
    });
    if (!upload.ok) return `the Firestore emulator at ${host} does not accept security rules (HTTP ${upload.status}): it is not Google's emulator`;
    const read = await fetch(`${base}/v1/projects/${project}/databases/(default)/documents/probe/doc`,
      { signal: AbortSignal.timeout(5000) });
    if (read.status !== 403) return `the Firestore emulator at ${host} does not enforce security rules (an unauthenticated read got HTTP ${read.status})`;
    return null;
  } catch (error) {
    const code = error.cause?.code ?? '';
    if (code.startsWith('HPE_')) return `the service at ${host} does not answer the REST API of Google's Firestore emulator (${code}): it is not Google's emulator`;
    return `no Firestore emulator answers at ${host} (${code || error.cause?.message || error.message})`;
  }
}

function which(command) {
  const local = join(here, 'node_modules', '.bin', command);
  if (existsSync(local)) return local;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, command))) return join(dir, command);
  }
  return null;
}

function javaMajor() {
  const java = which('java');
  if (!java) return null;
  const out = spawnSync(java, ['-version'], { encoding: 'utf8' });
  const match = /version "(\d+)(?:\.(\d+))?/.exec(`${out.stderr}${out.stdout}`);
  if (!match) return 0;
  return match[1] === '1' ? Number(match[2]) : Number(match[1]);
}

function cachedJar(prefix) {
  const dir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'firebase', 'emulators');
  if (!existsSync(dir)) return null;
  return readdirSync(dir).find((name) => name.startsWith(prefix) && name.endsWith('.jar')) ?? null;
}

async function main() {
  const host = process.env.FIRESTORE_EMULATOR_HOST;
  if (host) {
    const problem = await enforcesRules(host);
    if (problem) {
      notRun([problem], ['unset FIRESTORE_EMULATOR_HOST to let this start Google\'s emulators, '
        + 'or point it at Google\'s emulator (`firebase emulators:start --only firestore,storage`)']);
    }
    if (!process.env.FIREBASE_STORAGE_EMULATOR_HOST) {
      notRun(['FIRESTORE_EMULATOR_HOST is set but FIREBASE_STORAGE_EMULATOR_HOST is not: '
        + 'the storage rules tests need Google\'s Storage emulator too']);
    }
    runTests(process.env);
  }

  const reasons = [];
  const firebase = which('firebase');
  if (!firebase) reasons.push('the Firebase CLI (firebase-tools) is not installed');
  const java = javaMajor();
  if (java === null) reasons.push(`Java is not installed (the emulators need Java ${MIN_JAVA}+)`);
  else if (java < MIN_JAVA) reasons.push(`Java ${java} is installed; the emulators need Java ${MIN_JAVA}+`);
  if (!cachedJar('cloud-firestore-emulator')) reasons.push('Google\'s Firestore emulator is not downloaded');
  if (!cachedJar('cloud-storage-rules-runtime')) reasons.push('Google\'s Storage emulator is not downloaded');
  if (reasons.length) {
    notRun(reasons, [
      'npm install -g firebase-tools; install a Java 21+ runtime',
      'firebase setup:emulators:firestore && firebase setup:emulators:storage (they download from Google)',
      'or start them elsewhere and set FIRESTORE_EMULATOR_HOST and FIREBASE_STORAGE_EMULATOR_HOST',
    ]);
  }
  const command = `"${process.execPath}" --test ${files.join(' ')}`;
  const result = spawnSync(firebase, ['emulators:exec', '--only', 'firestore,storage',
    '--project', 'demo-rules-test', command], { cwd: repo, stdio: 'inherit' });
  process.exit(result.status ?? 1);
}

await main();
