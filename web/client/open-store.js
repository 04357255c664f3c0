/**
 * client/open-store.js: opens the data client's IndexedDB store (client/idb-store.js) as soon as
 * the page starts. index.html loads it as an `async` module ahead of app.js: it runs while the
 * app's other modules still load, and the data client, importing the same idb-store.js module
 * instance, reads its saved copies from the database already open. A page without it works the
 * same, the opening then starts with the data client.
 */

import { indexedDbStore } from './idb-store.js';

indexedDbStore()?.warm();
