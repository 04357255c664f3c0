/**
 * sw.js: the dashboard's service worker. It keeps the app shell (index.html, every ES module
 * the page imports, the Firebase SDK files its import map names, styles, the manifest and its
 * icons) in a versioned cache and serves it cache-first, so that a repeat visit starts without
 * waiting for the network and the page opens offline. It never touches anything else: the API's
 * answers (the data client keeps its own copy, revalidated with the functions' ETags),
 * `/__/firebase/init.json`, other origins.
 *
 * No build step and no list to maintain: the shell is found by following the page's references
 * from index.html (its `src`/`href` and import map, each module's static and literal dynamic
 * imports, the manifest's icons), same origin and under the worker's scope only. The version is
 * the SHA-256 of those files (names and bytes): the cache is `dashboard-shell-v<WORKER_FORMAT>-
 * <hash>`. After the page has loaded, it asks the worker to check (sw-register.js): the worker
 * fetches the shell again with `cache: 'no-cache'` (a 304 per unchanged file; a check that cannot
 * fetch every file gives up, the shell stays as it is), and when the hash
 * differs it fills a new cache, deletes the old one and tells the page, which offers a reload
 * (never forced: a form being edited stays). WORKER_FORMAT changes only with this file's cache
 * layout; any edit of sw.js is picked up by the browser itself (it compares the script's bytes
 * on navigation; the local stack serves it `no-cache`).
 */

const WORKER_FORMAT = 1;
const CACHE_PREFIX = 'dashboard-shell-';
const CACHE_NAME_PREFIX = `${CACHE_PREFIX}v${WORKER_FORMAT}-`;
const ENTRY = 'index.html';
const COMPLETE = '/__shell-complete__'; // written last: a cache without it is unfinished
const MAX_FILES = 400;
const FETCH_TIMEOUT_MS = 10000;
const SHELL_TYPES = /\.(?:html|js|css|webmanifest|png|svg|ico)$/;

const scopeUrl = () => new URL(self.registration.scope);

/** The names of this worker's complete shell caches, oldest first. */
async function shellCaches() {
  const names = (await caches.keys()).filter((name) => name.startsWith(CACHE_NAME_PREFIX));
  const complete = [];
  for (const name of names) {
    if (await (await caches.open(name)).match(COMPLETE)) complete.push(name);
  }
  return complete;
}

let current = null; // the promise of currentCache()'s answer, until the shell changes

/** The current shell cache's name (the newest complete one), or null. */
function currentCache() {
  current ??= shellCaches().then((names) => names.at(-1) ?? null);
  return current;
}

/** Same-origin, in-scope URLs a shell file refers to (`dynamic`: a module's `import()` too). */
function references(url, text, { dynamic = true } = {}) {
  const found = new Set();
  const add = (ref) => {
    if (!ref || ref.startsWith('data:') || ref.includes('${')) return;
    try {
      const target = new URL(ref, url);
      target.hash = '';
      target.search = '';
      if (target.origin === scopeUrl().origin && target.pathname.startsWith(scopeUrl().pathname)
          && SHELL_TYPES.test(target.pathname)) found.add(target.href);
    } catch {
      // not a URL
    }
  };
  if (url.endsWith('.webmanifest')) {
    try {
      for (const icon of JSON.parse(text).icons ?? []) add(icon.src);
    } catch {
      // a broken manifest: no icons
    }
  } else if (url.endsWith('.js')) {
    const patterns = [/\b(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g,
      /\bimport\s*['"]([^'"]+)['"]/g];
    if (dynamic) patterns.push(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g);
    for (const pattern of patterns) for (const match of text.matchAll(pattern)) {
      if (/^\.{0,2}\//.test(match[1])) add(match[1]);
    }
  } else if (url.endsWith('.css')) {
    for (const match of text.matchAll(/url\(\s*['"]?([^'")]+)['"]?\s*\)/g)) add(match[1]);
  } else {
    // index.html: src/href attributes and the import map's values alike (quoted paths).
    for (const match of text.matchAll(/["']((?:\.{0,2}\/)?[\w./-]+)["']/g)) add(match[1]);
  }
  return found;
}

async function fetchFresh(url) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
  try {
    // `no-cache`: revalidated with the server (a 304 per unchanged file), never a stale copy.
    return await fetch(url, { cache: 'no-cache', credentials: 'same-origin', signal: controller.signal });
  } finally {
    clearTimeout(timer);
  }
}

const NOT_A_FILE = new Set([404, 410]);

/**
 * Every shell file, fetched now: `{ files: Map(url -> Response), staticRefs: Map(url -> Set of
 * the URLs it names, its modules' `import()`s left out) }`. Rejects (and the current shell stays)
 * unless every file answered: a network failure, a timeout or a 5xx midway must not make a
 * shell without the files it could not fetch (a reload offline would then miss them). Only a
 * 404 or 410 says a reference is not a file (a comment's example): not part of the shell.
 */
async function collectShell() {
  const entry = new URL(ENTRY, scopeUrl()).href;
  const files = new Map();
  const staticRefs = new Map();
  const seen = new Set([entry]);
  let queue = [entry];
  while (queue.length > 0) {
    const next = [];
    await Promise.all(queue.map(async (url) => {
      const response = await fetchFresh(url);
      if (!response.ok || response.type !== 'basic') {
        if (url === entry || !NOT_A_FILE.has(response.status)) {
          throw new Error(`${url}: ${response.status || response.type}`);
        }
        return;
      }
      files.set(url, response);
      // Images have no references; the SDK's bundles import each other only by their gstatic
      // URLs, which the import map (in index.html) maps: 800 kB not worth scanning.
      if (/\.(?:png|ico)$/.test(url) || url.includes('/vendor/')) return;
      const text = await response.clone().text();
      staticRefs.set(url, references(url, text, { dynamic: false }));
      for (const ref of references(url, text)) {
        if (!seen.has(ref) && seen.size < MAX_FILES) {
          seen.add(ref);
          next.push(ref);
        }
      }
    }));
    queue = next;
  }
  return { files, staticRefs };
}

/** The shell's version: SHA-256 over its files' URLs and bytes, in URL order (hex, 16 chars). */
async function versionOf(files) {
  const parts = [];
  for (const url of [...files.keys()].sort()) {
    parts.push(new TextEncoder().encode(`${url}\n`), new Uint8Array(await files.get(url).clone().arrayBuffer()));
  }
  const all = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    all.set(part, offset);
    offset += part.length;
  }
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', all));
  return [...digest.slice(0, 8)].map((byte) => byte.toString(16).padStart(2, '0')).join('');
}

/**
 * The page's first modules: the scripts index.html names and what they import statically (not
 * what they load later with `import()`: page/early.js loads app.js once the saved copy is
 * painted). Only these are preloaded: preloading app.js's graph too held the early start back.
 */
function firstModules(staticRefs, entry) {
  const first = new Set();
  const isModule = (url) => url.endsWith('.js') && !url.includes('/vendor/') && url !== self.location.href;
  const queue = [...(staticRefs.get(entry) ?? [])].filter(isModule);
  while (queue.length > 0) {
    const url = queue.pop();
    if (first.has(url) || !staticRefs.has(url)) continue;
    first.add(url);
    queue.push(...[...staticRefs.get(url)].filter(isModule));
  }
  return [...first].sort();
}

let refreshing = null; // the refresh under way
let queued = null; // the one asked for meanwhile: it runs after, and sees what changed since

/**
 * Fetch the shell and, when its version is new, make it the current cache (the old ones are
 * deleted once the new one is complete). Resolves to `{ version, previous }` or null. Asked
 * while one runs, it runs once more after it (that one may have fetched a file before it
 * changed); any number of asks meanwhile share that one.
 */
function refreshShell() {
  if (refreshing) {
    queued ??= refreshing.catch(() => {}).then(() => {
      queued = null;
      return refreshShell();
    });
    return queued;
  }
  refreshing = (async () => {
    const { files, staticRefs } = await collectShell();
    const version = await versionOf(files);
    const name = `${CACHE_NAME_PREFIX}${version}`;
    const previous = await currentCache();
    const anyPrevious = previous ?? (await caches.keys()).find((key) => key.startsWith(CACHE_PREFIX));
    if (previous !== name) {
      const modules = firstModules(staticRefs, new URL(ENTRY, scopeUrl()).href);
      const cache = await caches.open(name);
      await Promise.all([...files].map(([url, response]) => cache.put(url, response)));
      await cache.put(COMPLETE, new Response(JSON.stringify({ version, modules, at: Date.now() })));
    }
    current = Promise.resolve(name);
    for (const key of await caches.keys()) {
      if (key.startsWith(CACHE_PREFIX) && key !== name) await caches.delete(key);
    }
    return previous === name ? null : { version, previous: anyPrevious ?? null };
  })().finally(() => { refreshing = null; });
  return refreshing;
}

async function announce(update) {
  if (!update?.previous) return; // the first install is not a new version
  for (const client of await self.clients.matchAll({ type: 'window' })) {
    client.postMessage({ type: 'dashboard-shell-updated', version: update.version });
  }
}

/**
 * Static routes (Chromium 123+, `InstallEvent.addRoutes`): the shell's scripts and styles are
 * answered from Cache Storage by the browser itself, without running this worker's fetch
 * handler (nor starting the worker): no round trip through the worker's JavaScript per file.
 * What the caches lack comes from the network, not stored (the next refresh of the shell puts
 * it there). Other browsers: the fetch handler below does the same, in JavaScript.
 */
function staticRoutes() {
  const urlPattern = new URLPattern({
    baseURL: self.location.origin, pathname: `${scopeUrl().pathname}*`, search: '',
  });
  return ['script', 'style'].map((requestDestination) => ({
    condition: { urlPattern, requestMethod: 'GET', requestDestination }, source: 'cache',
  }));
}

self.addEventListener('install', (event) => {
  if (typeof event.addRoutes === 'function') { // refused or absent: the fetch handler serves all
    event.waitUntil(event.addRoutes(staticRoutes()).catch(() => {}));
  }
  event.waitUntil(refreshShell().then((update) => { self.pendingAnnouncement = update; })
    .then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim().then(() => announce(self.pendingAnnouncement)));
});

self.addEventListener('message', (event) => {
  if (event.data?.type === 'dashboard-shell-check') {
    event.waitUntil(refreshShell().then(announce).catch(() => {})); // offline: next time
  }
});

let opened = { name: null, cache: null }; // the current cache, opened once per worker run

/** `key` from the cache `name`, as Cache Storage has it: Chromium keeps the compiled code of a
 * script it stored, and uses it when the page gets that very response. */
async function cached(name, key) {
  if (opened.name !== name) opened = { name, cache: caches.open(name) };
  return (await opened.cache).match(key);
}

let preloads = { name: null, links: '' }; // the current cache's links, read once per worker run

/**
 * index.html with a `<link rel="modulepreload">` per first module of the page (firstModules),
 * so that the browser asks for them all at once instead of one level of imports after another
 * (a waterfall of levels was most of a repeat visit).
 * The worker knows the module graph from its crawl; the page keeps no list. Links are not
 * scripts: the page's CSP (and its inline scripts' hashes) is unchanged.
 */
async function withPreloads(response) {
  const name = await currentCache();
  if (!name || !(response.headers.get('Content-Type') ?? '').startsWith('text/html')) return response;
  if (preloads.name !== name) {
    const marker = await cached(name, COMPLETE);
    const modules = marker ? (await marker.json()).modules ?? [] : [];
    preloads = { name, links: modules.map((url) => `<link rel="modulepreload" href="${new URL(url).pathname}">`).join('') };
  }
  const { links } = preloads;
  const html = await response.text();
  const headers = new Headers(response.headers);
  headers.delete('Content-Length');
  headers.delete('ETag');
  return new Response(html.replace('</head>', `${links}\n</head>`),
    { status: response.status, statusText: response.statusText, headers });
}

/** A shell file from the current cache; what is not there comes from the network, and stays. */
async function fromShell(request, key) {
  const name = await currentCache();
  const hit = name ? await cached(name, key) : null;
  if (hit) return hit;
  const cache = name ? await caches.open(name) : null;
  const response = await fetch(request);
  const json = (response.headers.get('Content-Type') ?? '').includes('json');
  if (cache && response.ok && response.type === 'basic' && !json) { // never an API answer
    await cache.put(key, response.clone()).catch(() => {});
  }
  return response;
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  const scope = scopeUrl();
  if (url.origin !== scope.origin || !url.pathname.startsWith(scope.pathname)) return;
  if (request.mode === 'navigate') {
    // The page itself, whatever its query (?api=, ?live=0, ...); any other navigation (an API
    // URL opened in a tab) goes to the network untouched.
    if (url.pathname !== scope.pathname && url.pathname !== `${scope.pathname}${ENTRY}`) return;
    event.respondWith(fromShell(request, new URL(ENTRY, scope).href).then(withPreloads));
    return;
  }
  if (!SHELL_TYPES.test(url.pathname)) return; // the API, init.json: never the worker's
  event.respondWith(fromShell(request, `${url.origin}${url.pathname}`));
});
