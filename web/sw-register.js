/**
 * sw-register.js: the page's side of the service worker (sw.js), as a module of its own (the
 * CSP allows no inline script). It registers the worker, asks it to check for a new version of
 * the app shell once the page has loaded (then every 10 minutes, and when the network returns),
 * and, when one is ready, says so in a banner with a Reload button: the person reloads when it
 * suits them (a form being edited is never lost to a forced reload). It also shows an "offline"
 * chip in the header while the browser is offline.
 *
 * `?sw=0` on the page's URL unregisters the worker and deletes its caches (to compare, or to
 * debug); any static site can load this module next to sw.js the same way (docs/client.md).
 */

const CHECK_EVERY_MS = 10 * 60 * 1000;
const WORKER_URL = new URL('sw.js', import.meta.url);

function showUpdate() {
  if (document.getElementById('app-update')) return;
  const bar = document.createElement('div');
  bar.id = 'app-update';
  bar.className = 'app-update';
  bar.setAttribute('role', 'status');
  bar.textContent = 'A new version of the dashboard is ready. ';
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'small';
  button.textContent = 'Reload';
  button.addEventListener('click', () => location.reload());
  const later = document.createElement('button');
  later.type = 'button';
  later.className = 'link';
  later.textContent = 'Later';
  later.addEventListener('click', () => bar.remove());
  bar.append(button, ' ', later);
  document.body.append(bar);
}

function watchConnection() {
  const chip = document.createElement('span');
  chip.id = 'offline-chip';
  chip.className = 'offline-chip';
  chip.textContent = 'offline';
  chip.title = 'No network: the data shown is the last copy saved in this browser; '
    + 'changes cannot be saved until the network is back.';
  const show = () => { chip.hidden = navigator.onLine !== false; };
  show();
  (document.querySelector('.topbar') ?? document.body).append(chip);
  window.addEventListener('online', show);
  window.addEventListener('offline', show);
}

async function forgetWorker() {
  for (const registration of await navigator.serviceWorker.getRegistrations()) {
    await registration.unregister();
  }
  for (const name of await caches.keys()) {
    if (name.startsWith('dashboard-shell-')) await caches.delete(name);
  }
}

async function register() {
  const container = navigator.serviceWorker;
  container.addEventListener('message', (event) => {
    if (event.data?.type === 'dashboard-shell-updated') showUpdate();
  });
  container.startMessages();
  await container.register(WORKER_URL, { type: 'classic', scope: './' });
  const ask = async () => {
    const registration = await container.ready;
    registration.active?.postMessage({ type: 'dashboard-shell-check' });
  };
  const askAfterLoad = () => setTimeout(ask, 0);
  if (document.readyState === 'complete') askAfterLoad();
  else window.addEventListener('load', askAfterLoad, { once: true });
  setInterval(ask, CHECK_EVERY_MS);
  window.addEventListener('online', ask);
}

watchConnection();
if ('serviceWorker' in navigator && window.isSecureContext) {
  const off = new URLSearchParams(location.search).get('sw') === '0';
  (off ? forgetWorker() : register()).catch((error) => {
    // The page works without the worker (no offline start, no instant shell): say why in the console.
    console.warn(`service worker: ${error?.message ?? error}`);
  });
}
