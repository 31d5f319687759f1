'use strict';
// The Node.js/Express half of runoff's example migration trial. ../go/main.go is its Go
// rewrite: the same API, answering byte-identical JSON for the same request (checked by
// tests/it/examples.rs). Every place where the two runtimes would naturally differ is pinned
// down here and in main.go; the comments marked PARITY say how.
//
//   GET  /api/users?country=DE&min_age=30&max_age=40&sort=age&limit=50&offset=0
//   POST /api/orders   {"user_id":1,"items":[{"sku":"AB-1","qty":2,"unit_price_cents":1999}]}
//   GET  /api/report?rounds=N   CPU-heavy aggregate; blocks Node's single event loop meanwhile
//   GET  /healthz
//   GET  /ws           WebSocket (RFC 6455, package `ws`): echoes every message, same type
//
// PORT (default 3000) and HOST (default 127.0.0.1) choose the listen address.

const http = require('http');
const express = require('express');
const { WebSocketServer } = require('ws');

// ---------------------------------------------------------------- the data set
// Generated, not loaded: xorshift32 with a fixed seed yields the same users in both apps.

const USER_COUNT = 5000;
const SEED = 2463534242;
const COUNTRIES = ['BR', 'CA', 'DE', 'ES', 'FR', 'GB', 'IN', 'JP', 'NL', 'US'];
const FIRST = ['ada', 'alan', 'barbara', 'dennis', 'edsger', 'frances', 'grace', 'guido',
  'james', 'john', 'ken', 'linus', 'margaret', 'niklaus', 'radia', 'rob'];
const LAST = ['hamilton', 'hopper', 'kernighan', 'knuth', 'lamport', 'liskov', 'lovelace',
  'perlman', 'pike', 'ritchie', 'thompson', 'torvalds', 'turing', 'wirth'];
const DAY_MS = 86400000;
const FIRST_SIGNUP_DAY = 17532; // 2018-01-01, in days since 1970-01-01

function makeUsers() {
  let s = SEED >>> 0;
  // PARITY: JS bit operators work on int32; `>>> 0` brings each step back to uint32, so the
  // sequence is bit-for-bit Go's uint32 xorshift.
  const next = () => {
    s = (s ^ (s << 13)) >>> 0;
    s = (s ^ (s >>> 17)) >>> 0;
    s = (s ^ (s << 5)) >>> 0;
    return s;
  };
  const users = [];
  for (let id = 1; id <= USER_COUNT; id++) {
    const first = FIRST[next() % FIRST.length];
    const last = LAST[next() % LAST.length];
    const day = FIRST_SIGNUP_DAY + (next() % 2190);
    users.push({
      id,
      name: `${first} ${last}`,
      email: `${first}.${last}${id}@example.com`,
      country: COUNTRIES[next() % COUNTRIES.length],
      age: 18 + (next() % 63),
      score: next() % 100001,
      signed_up: new Date(day * DAY_MS).toISOString().slice(0, 10),
    });
  }
  return users;
}

const USERS = makeUsers();

// ---------------------------------------------------------------- helpers

// PARITY: Go's url.ParseQuery, exactly: `;` in a pair is an error, `%` must be followed by two
// hex digits, `+` is a space, the first value of a repeated key wins (Go's Query().Get).
// Express's own parser (qs) would turn `?a=1&a=2` into an array and `?a[b]=1` into an object,
// and URLSearchParams silently keeps malformed escapes. Bytes are decoded as latin1: every
// parameter is then checked against an ASCII pattern, which a non-ASCII byte fails in both.
function unescapeQuery(s) {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '%') {
      const hex = s.slice(i + 1, i + 3);
      if (i + 2 >= s.length || !/^[0-9A-Fa-f]{2}$/.test(hex)) return null;
      out += String.fromCharCode(parseInt(hex, 16));
      i += 2;
    } else if (c === '+') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

function parseQuery(url) {
  const q = url.indexOf('?');
  const params = new Map();
  if (q < 0) return params;
  for (const pair of url.slice(q + 1).split('&')) {
    if (pair.includes(';')) return null;
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = unescapeQuery(eq < 0 ? pair : pair.slice(0, eq));
    const value = unescapeQuery(eq < 0 ? '' : pair.slice(eq + 1));
    if (key === null || value === null) return null;
    if (!params.has(key)) params.set(key, value);
  }
  return params;
}

class BadRequest extends Error {
  constructor(message, status = 400, headers = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

// An integer query parameter of at most `digits` digits in [min, max], or `dflt` when absent.
function intParam(params, name, min, max, dflt) {
  if (!params.has(name)) return dflt;
  const raw = params.get(name);
  const msg = `${name} must be an integer from ${min} to ${max}`;
  if (!/^[0-9]{1,9}$/.test(raw)) throw new BadRequest(msg);
  const n = Number(raw);
  if (n < min || n > max) throw new BadRequest(msg);
  return n;
}

function queryOf(req) {
  const params = parseQuery(req.originalUrl);
  if (params === null) throw new BadRequest('invalid query string');
  return params;
}

// Round n/d half up, for integers n >= 0, d > 0 whose product terms stay below 2^53.
// PARITY: `%` and `-` keep it exact integer arithmetic; Go uses int64 division.
function divRound(n, d) {
  const t = n + Math.floor(d / 2);
  return (t - (t % d)) / d;
}

// A mean with two decimals: PARITY: computed in integer hundredths, then one division by 100,
// which is the same IEEE double in both runtimes and prints the same shortest digits.
function mean2(sum, count) {
  return divRound(sum * 100, count) / 100;
}

// Nearest-rank percentile of a sorted array.
function percentile(sorted, p) {
  const rank = Math.floor((p * sorted.length + 99) / 100);
  return sorted[Math.max(rank, 1) - 1];
}

function fnv1a32(str) {
  let h = 0x811c9dc5;
  for (let i = 0; i < str.length; i++) {
    h ^= str.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

const isInt = (v) => typeof v === 'number' && Number.isInteger(v);
const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);

// ---------------------------------------------------------------- handlers

const SORTS = {
  id: (a, b) => a.id - b.id,
  age: (a, b) => a.age - b.age || a.id - b.id,
  '-age': (a, b) => b.age - a.age || a.id - b.id,
  score: (a, b) => a.score - b.score || a.id - b.id,
  '-score': (a, b) => b.score - a.score || a.id - b.id,
};

function listUsers(req, res) {
  const params = queryOf(req);
  let country = null;
  if (params.has('country')) {
    const c = params.get('country');
    if (!/^[A-Za-z]{2}$/.test(c)) throw new BadRequest('country must be a 2-letter code');
    country = c.toUpperCase();
  }
  const minAge = intParam(params, 'min_age', 0, 150, 0);
  const maxAge = intParam(params, 'max_age', 0, 150, 150);
  const limit = intParam(params, 'limit', 1, 500, 50);
  const offset = intParam(params, 'offset', 0, 1000000, 0);
  const sort = params.has('sort') ? params.get('sort') : 'id';
  if (!Object.prototype.hasOwnProperty.call(SORTS, sort)) {
    throw new BadRequest('sort must be one of id, age, -age, score, -score');
  }
  const matched = USERS.filter(
    (u) => (country === null || u.country === country) && u.age >= minAge && u.age <= maxAge,
  );
  if (sort !== 'id') matched.sort(SORTS[sort]);
  res.json({ total: matched.length, items: matched.slice(offset, offset + limit) });
}

const TAX_RATE_BP = 825; // 8.25 %, in basis points
const SKU = /^[A-Z0-9-]{1,32}$/;
const MAX_ITEMS = 100;

function createOrder(req, res) {
  // express.raw gives a Buffer, or {} when the request has no body at all.
  const text = Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '';
  let body;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new BadRequest('invalid JSON body');
  }
  if (!isObject(body)) throw new BadRequest('body must be a JSON object');
  const userId = body.user_id;
  if (!isInt(userId) || userId < 1) throw new BadRequest('user_id must be a positive integer');
  if (userId > USERS.length) throw new BadRequest('user_id: no such user', 422);
  const items = body.items;
  if (!Array.isArray(items) || items.length === 0) {
    throw new BadRequest('items must be a non-empty array');
  }
  if (items.length > MAX_ITEMS) throw new BadRequest(`items: at most ${MAX_ITEMS} allowed`);
  const lines = [];
  let subtotal = 0;
  let count = 0;
  let canonical = `${userId}`;
  items.forEach((item, i) => {
    if (!isObject(item)) throw new BadRequest(`items[${i}] must be an object`);
    if (typeof item.sku !== 'string' || !SKU.test(item.sku)) {
      throw new BadRequest(`items[${i}].sku must be 1 to 32 characters of A-Z, 0-9 and -`);
    }
    if (!isInt(item.qty) || item.qty < 1 || item.qty > 1000) {
      throw new BadRequest(`items[${i}].qty must be an integer from 1 to 1000`);
    }
    const price = item.unit_price_cents;
    if (!isInt(price) || price < 0 || price > 10000000) {
      throw new BadRequest(`items[${i}].unit_price_cents must be an integer from 0 to 10000000`);
    }
    const lineTotal = item.qty * price;
    subtotal += lineTotal;
    count += item.qty;
    canonical += `|${item.sku}*${item.qty}@${price}`;
    lines.push({
      sku: item.sku,
      qty: item.qty,
      unit_price_cents: price,
      line_total_cents: lineTotal,
    });
  });
  const tax = divRound(subtotal * TAX_RATE_BP, 10000);
  res.status(201).json({
    // Deterministic, so that both backends agree; a real service would mint a random id here,
    // which is exactly the kind of field a response comparison has to be told to ignore.
    order_id: `ord-${fnv1a32(canonical).toString(16).padStart(8, '0')}`,
    user_id: userId,
    country: USERS[userId - 1].country,
    items: lines,
    item_count: count,
    subtotal_cents: subtotal,
    tax_rate_bp: TAX_RATE_BP,
    tax_cents: tax,
    total_cents: subtotal + tax,
    currency: 'EUR',
  });
}

const DEFAULT_ROUNDS = 20;

function stats(sorted, sum) {
  return {
    min: sorted[0],
    max: sorted[sorted.length - 1],
    mean: mean2(sum, sorted.length),
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
  };
}

// One pass of the report: per-country aggregates, age and score percentiles by sorting, and a
// leaderboard by sorting every user. O(n log n); `rounds` repeats it to make it heavier.
function reportOnce() {
  const byCountry = new Map(COUNTRIES.map((c) => [c, { users: 0, ageSum: 0, scoreSum: 0 }]));
  const ages = new Array(USERS.length);
  const scores = new Array(USERS.length);
  let ageSum = 0;
  let scoreSum = 0;
  USERS.forEach((u, i) => {
    const c = byCountry.get(u.country);
    c.users += 1;
    c.ageSum += u.age;
    c.scoreSum += u.score;
    ages[i] = u.age;
    scores[i] = u.score;
    ageSum += u.age;
    scoreSum += u.score;
  });
  ages.sort((a, b) => a - b);
  scores.sort((a, b) => a - b);
  const ranked = USERS.slice().sort((a, b) => b.score - a.score || a.id - b.id);
  return {
    users: USERS.length,
    countries: COUNTRIES.map((country) => {
      const c = byCountry.get(country);
      return {
        country,
        users: c.users,
        avg_age: mean2(c.ageSum, c.users),
        avg_score: mean2(c.scoreSum, c.users),
      };
    }),
    age: stats(ages, ageSum),
    score: stats(scores, scoreSum),
    top: ranked.slice(0, 10).map((u) => ({ id: u.id, name: u.name, score: u.score })),
  };
}

function report(req, res) {
  const rounds = intParam(queryOf(req), 'rounds', 1, 1000, DEFAULT_ROUNDS);
  let result;
  for (let r = 0; r < rounds; r++) result = reportOnce();
  res.json({ rounds, ...result });
}

// ---------------------------------------------------------------- /ws

// Messages up to 64 MiB, whole (fragments included), like main.go's SetReadLimit.
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
const WS_KEY = /^[+/0-9A-Za-z]{22}==$/; // base64 of 16 bytes, as RFC 6455 asks

const hasToken = (value, token) =>
  (value || '').split(',').some((t) => t.replace(/^[ \t]+|[ \t]+$/g, '').toLowerCase() === token);

// True for a request that asks for a WebSocket: `GET`, `Connection: upgrade` (a token of the
// list) and `Upgrade: websocket` (exactly, in any case: what ws accepts).
function isWebSocketUpgrade(req) {
  const upgrade = req.headers.upgrade;
  return req.method === 'GET' && hasToken(req.headers.connection, 'upgrade') &&
    upgrade !== undefined && upgrade.toLowerCase() === 'websocket';
}

const upgradeRequired = () =>
  new BadRequest('websocket upgrade required', 426, { Upgrade: 'websocket' });

// Why GET /ws cannot become a WebSocket, as an error to answer in JSON; null if it can.
// PARITY: ws and gorilla/websocket each refuse a bad handshake in their own words, in plain
// text, and disagree on what is bad (ws also takes version 8; gorilla takes any non-empty key
// and a token list in Upgrade). Both apps check the handshake themselves first, alike, so
// neither library ever refuses one.
function wsRefusal(req) {
  if (!isWebSocketUpgrade(req)) return upgradeRequired();
  if (req.headers['sec-websocket-version'] !== '13') {
    const header = { 'Sec-WebSocket-Version': '13' };
    return new BadRequest('Sec-WebSocket-Version must be 13', 400, header);
  }
  if (!WS_KEY.test(req.headers['sec-websocket-key'] || '')) {
    return new BadRequest('Sec-WebSocket-Key must be 16 bytes in base64');
  }
  return null;
}

// PARITY: no permessage-deflate (main.go does not enable it either; ws's default for a server
// is off too, said here so that it stays off); messages up to 64 MiB.
const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  maxPayload: MAX_MESSAGE_BYTES,
});

wss.on('connection', (ws) => {
  // ws answers pings with pongs of the same payload, and a close frame with a close frame
  // carrying the same code and reason (PARITY: main.go sets a close handler that does that).
  // Text that is not UTF-8 closes with 1007 (main.go checks it by hand).
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  // A protocol error has already been answered with a close frame; an 'error' event without a
  // listener would end the process.
  ws.on('error', () => {});
});

// Node gives every request with `Connection: upgrade` to the server's 'upgrade' listener and
// never to the app. A valid WebSocket handshake on GET /ws is handed to ws; every other one is
// answered by the app like any request, on a response of its own, and the connection closed
// after it. (Node has already read the headers but not the body: a request that asks for an
// upgrade and has a body reaches the app without it.)
function onUpgrade(req, socket, head) {
  const path = req.url.split('?')[0];
  if (path === '/ws' && wsRefusal(req) === null) {
    // PARITY: a client must wait for the 101 before it sends frames (RFC 6455, 4.1);
    // gorilla/websocket 1.5 drops the connection, unanswered, when frames came with the
    // handshake, where ws would take them.
    if (head.length > 0) {
      socket.destroy();
      return;
    }
    // PARITY: gorilla/websocket (without Subprotocols) ignores Sec-WebSocket-Protocol; ws
    // would choose the client's first subprotocol, or refuse a malformed list.
    delete req.headers['sec-websocket-protocol'];
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    return;
  }
  socket.on('error', () => socket.destroy());
  const res = new http.ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket);
  res.on('finish', () => {
    res.detachSocket(socket);
    socket.end();
  });
  app(req, res);
}

// ---------------------------------------------------------------- the app

const app = express();
// PARITY: Express matches `/API/Users` and `/api/users/` by default; Go's mux-less routing
// does not. Both are off here, and both apps route on the raw (still percent-encoded) path.
app.set('case sensitive routing', true);
app.set('strict routing', true);
// Headers Go does not send; a response comparison would otherwise have to ignore them.
app.disable('x-powered-by');
app.set('etag', false);

app.get('/healthz', (req, res) => res.json({ status: 'ok' }));
app.get('/api/users', listUsers);
app.get('/api/report', report);
// What reaches the app on /ws is not a valid WebSocket handshake (onUpgrade takes those).
app.get('/ws', (req) => {
  throw wsRefusal(req) || upgradeRequired();
});
// PARITY: the raw body for every Content-Type (Go does not look at it either); no gzip
// inflation (415, as in Go); a 64 KiB cap (413).
app.post('/api/orders', express.raw({ type: () => true, limit: 65536, inflate: false }), createOrder);

// Every other method and path, OPTIONS included (Express would otherwise answer it itself).
app.use((req, res) => res.status(404).json({ error: 'not found' }));

// eslint-disable-next-line no-unused-vars
app.use((err, req, res, next) => {
  if (err instanceof BadRequest) {
    return res.status(err.status).set(err.headers).json({ error: err.message });
  }
  if (err.type === 'entity.too.large') return res.status(413).json({ error: 'body too large' });
  if (err.type === 'encoding.unsupported') {
    return res.status(415).json({ error: 'unsupported content encoding' });
  }
  if (err.type === 'request.aborted') return undefined;
  console.error(err);
  return res.status(500).json({ error: 'internal error' });
});

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 3000);
const server = app.listen(port, host, () => {
  console.log(`node example listening on http://${host}:${port}`);
});
// Behind a proxy with a connection pool, the backend must not be the first to close an idle
// keep-alive connection: Node's 5 s default races the pool, and a request sent on a connection
// being closed fails (runoff retries idempotent methods once, never a POST).
server.keepAliveTimeout = 65000;
server.headersTimeout = 66000;
server.on('upgrade', onUpgrade);

// An open WebSocket would keep server.close waiting: drop them, as Go's exit does.
const stop = () => {
  server.close(() => process.exit(0));
  wss.clients.forEach((ws) => ws.terminate());
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
