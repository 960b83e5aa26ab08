// sw.js: the service worker of the RT Messenger web client. It keeps a copy of the
// app shell (every file under web/, listed by build.rs) so that, when the server
// cannot be reached, the app still opens and says so itself instead of showing the
// browser's error page. It never stores API responses and never sees the WebSocket:
// it answers only page navigations and GETs of shell files, and always from the
// network first (a running server serves its own client, so no old copy is ever
// used while it answers); the copy is used only when the network fails.
//
// build.rs fills in the two lines below: VERSION is a hash of the whole client, so a
// new client is a new service worker with a new cache, and the old cache is dropped.
const VERSION = 'dev';
const SHELL = [];
const CACHE = `rtm-shell-${VERSION}`;
const PREFIX = 'rtm-shell-';

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith(PREFIX) && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  const navigation = req.mode === 'navigate';
  // API calls, /healthz and anything not in the shell go to the network untouched.
  if (!navigation && !SHELL.includes(url.pathname)) return;
  event.respondWith(networkFirst(req, navigation));
});

async function networkFirst(req, navigation) {
  try {
    return await fetch(req);
  } catch (err) {
    const cache = await caches.open(CACHE);
    // Every page of the app is index.html (client routes, ?invite=…).
    const copy = await cache.match(navigation ? '/' : req, { ignoreSearch: navigation });
    if (copy) return copy;
    throw err;
  }
}
