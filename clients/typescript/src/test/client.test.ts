// The client against the real broker: `tokenbroker demo` with 3 s tokens,
// so that the broker refreshes its named credential every few seconds.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { inspect } from "node:util";
import { connect, type NatsConnection } from "@nats-io/transport-node";

import {
  Action,
  Code,
  getToken,
  Token,
  TokenBrokerError,
  TokenProvider,
  watchTokens,
  type RefreshedEvent,
  type TokenEvent,
  type TokenWatch,
} from "../index.js";
import { DEMO_APP, DEMO_PASSWORD, DEMO_USER, LIFETIME_SECONDS, startBroker, within, type Broker } from "./broker.js";

// A refresh comes about every 0.9 × LIFETIME_SECONDS; this leaves room for
// a loaded machine without ever being what the test waits for.
const EVENT_TIMEOUT = 10 * LIFETIME_SECONDS * 1000;
const REQUEST_TIMEOUT = 10_000;

let broker: Broker | undefined;
let nc: NatsConnection;

before(async () => {
  broker = await startBroker();
  nc = await connect({ servers: broker.url, timeout: REQUEST_TIMEOUT });
});

after(async () => {
  // Safety net for a failed test; the last test stops the broker itself.
  await nc?.close();
  await broker?.stop();
});

/** Asserts that nothing a token shows when printed or serialised holds its access token. */
function assertHidden(tok: Token): void {
  const shown = [JSON.stringify(tok), inspect(tok), String(tok), `${tok}`, JSON.stringify({ ...tok }), inspect({ tok }), JSON.stringify(structuredClone(tok))];
  for (const s of shown) assert.ok(!s.includes(tok.accessToken), `the access token shows in ${s}`);
}

/** The next event of w that satisfies ok, within EVENT_TIMEOUT. */
async function nextEvent(w: TokenWatch, ok: (ev: TokenEvent) => boolean = () => true): Promise<TokenEvent> {
  return within(
    (async () => {
      for (;;) {
        const r = await w.next();
        if (r.done) throw new Error("the watch ended");
        if (ok(r.value)) return r.value;
      }
    })(),
    EVENT_TIMEOUT,
    "an event",
  );
}

/** A TokenBrokerError check for assert.rejects. */
function brokerError(code: number, error: string, secret?: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof TokenBrokerError, `want a TokenBrokerError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.error, error, err.message);
    assert.equal(err.name, "TokenBrokerError");
    if (secret) assert.ok(!err.message.includes(secret) && !inspect(err).includes(secret), `the error shows the secret: ${inspect(err)}`);
    return true;
  };
}

/** nc with its requests counted. */
function counting(conn: NatsConnection): { nc: NatsConnection; requests: () => number } {
  let n = 0;
  const proxy = new Proxy(conn, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop, target);
      if (prop === "request") {
        return (...args: Parameters<NatsConnection["request"]>) => {
          n++;
          return target.request(...args);
        };
      }
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return { nc: proxy, requests: () => n };
}

const actions: string[] = Object.values(Action);

test("a named credential's token", async () => {
  const tok = await getToken(nc, { credential: DEMO_APP }, { timeout: REQUEST_TIMEOUT });
  assert.ok(tok instanceof Token);
  assert.ok(tok.accessToken.length > 0);
  assert.equal(tok.tokenType, "Bearer");
  assert.equal(tok.authorization, `Bearer ${tok.accessToken}`);
  assert.equal(tok.credentialId, DEMO_APP);
  assert.ok(actions.includes(tok.action), tok.action);
  assert.ok(tok.expiresOn.getTime() > Date.now(), `expired at ${tok.expiresOn.toISOString()}`);
  assert.ok(tok.expiresIn >= 0 && tok.expiresIn <= LIFETIME_SECONDS);
  assertHidden(tok);
});

test("a username and password's token, from the cache, and force_refresh", async () => {
  const creds = { username: DEMO_USER, password: DEMO_PASSWORD };
  const first = await getToken(nc, creds, { timeout: REQUEST_TIMEOUT });
  assert.match(first.credentialId, /^u-[0-9a-f]{32}$/, "a keyed hash, never the username");
  assert.ok(actions.includes(first.action), first.action);
  assertHidden(first);

  const forced = await getToken(nc, creds, { forceRefresh: true, timeout: REQUEST_TIMEOUT });
  assert.equal(forced.credentialId, first.credentialId);
  assert.notEqual(forced.action, Action.Existing, "force_refresh skips the cache");
});

test("a claims challenge gets a new token; one that is not JSON is a 400", async () => {
  const before = await getToken(nc, { credential: DEMO_APP }, { timeout: REQUEST_TIMEOUT });
  const challenge = '{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}';
  const after = await getToken(nc, { credential: DEMO_APP }, { claims: challenge, timeout: REQUEST_TIMEOUT });
  assert.notEqual(after.accessToken, before.accessToken, "a claims challenge skips the cache");
  await assert.rejects(
    getToken(nc, { credential: DEMO_APP }, { claims: "not a JSON object", timeout: REQUEST_TIMEOUT }),
    brokerError(Code.InvalidRequest, "invalid_request"),
  );
});

test("min_ttl the IdP's tokens cannot meet is a 400", async () => {
  await assert.rejects(
    getToken(nc, { credential: DEMO_APP }, { minTtl: 10 * LIFETIME_SECONDS, timeout: REQUEST_TIMEOUT }),
    brokerError(Code.InvalidRequest, "invalid_request"),
  );
});

test("a wrong password is a 401 invalid_grant that shows no password", async () => {
  const wrong = "not-the-demo-password";
  await assert.rejects(
    getToken(nc, { username: DEMO_USER, password: wrong }, { timeout: REQUEST_TIMEOUT }),
    brokerError(Code.Rejected, "invalid_grant", wrong),
  );
});

test("an unknown credential is a 404", async () => {
  await assert.rejects(getToken(nc, { credential: "no-such-credential" }, { timeout: REQUEST_TIMEOUT }), brokerError(Code.NotFound, "unknown_credential"));
});

test("a name that is no subject token goes on the shared subject, for the broker to refuse", async () => {
  await assert.rejects(getToken(nc, { credential: "not.a.name" }, { timeout: REQUEST_TIMEOUT }), brokerError(Code.NotFound, "unknown_credential"));
});

test("no broker on the subjects is a 503", async () => {
  await assert.rejects(
    getToken(nc, { credential: DEMO_APP }, { subjectPrefix: "nobody", timeout: REQUEST_TIMEOUT }),
    (err: unknown) => brokerError(Code.Unavailable, "temporarily_unavailable")(err) && (err as Error).cause !== undefined,
  );
});

test("watchTokens receives a refreshed event and ends on return()", async () => {
  const w = await watchTokens(nc, DEMO_APP);
  const ev = await nextEvent(w);
  assert.equal(ev.kind, "refreshed", JSON.stringify(ev));
  const r = ev as RefreshedEvent;
  assert.equal(r.subject, `token.refreshed.${DEMO_APP}`);
  assert.equal(r.credentialId, DEMO_APP);
  assert.equal(r.token.credentialId, DEMO_APP);
  assert.match(r.eventId, /^[0-9a-f-]{36}$/);
  assert.ok(actions.includes(r.token.action), r.token.action);
  assert.ok(!Number.isNaN(r.refreshedAt.getTime()));
  assert.ok(r.token.expiresOn.getTime() > Date.now());
  assert.ok(!JSON.stringify(ev).includes(r.token.accessToken), "an event's JSON shows its token");
  assertHidden(r.token);

  assert.deepEqual(await w.return(), { value: undefined, done: true });
  assert.deepEqual(await w.next(), { value: undefined, done: true });
  await within(w.closed, EVENT_TIMEOUT, "the watch closing");
});

test("watchTokens ends when its connection drains", async () => {
  const nc2 = await connect({ servers: broker!.url, timeout: REQUEST_TIMEOUT });
  const w = await watchTokens(nc2, DEMO_APP);
  const seen: TokenEvent[] = [];
  const loop = (async () => {
    for await (const ev of w) seen.push(ev);
  })();
  await nc2.drain();
  await within(loop, EVENT_TIMEOUT, "the for await loop ending");
  await within(w.closed, EVENT_TIMEOUT, "the watch closing");
});

test("watchTokens refuses a credential id that is not one subject token", async () => {
  await assert.rejects(watchTokens(nc, "demo.*"), brokerError(Code.InvalidRequest, "invalid_request"));
});

test("TokenProvider shares one request and serves a pushed refresh without asking", async () => {
  const counted = counting(nc);
  // minTtl below the demo's 3 s tokens, else every token is too short.
  const tokens = new TokenProvider(counted.nc, { credential: DEMO_APP }, { minTtl: 1, timeout: REQUEST_TIMEOUT });
  try {
    const [a, b, c] = await Promise.all([tokens.token(), tokens.token(), tokens.token()]);
    assert.equal(counted.requests(), 1, "concurrent callers share one request");
    assert.equal(a, b);
    assert.equal(a, c);
    assert.equal(tokens.credentialId, DEMO_APP);

    // The broker refreshes the credential ahead of expiry and pushes the new
    // token: wait for one newer than the provider's.
    const w = await watchTokens(nc, DEMO_APP);
    const ev = (await nextEvent(w, (e) => e.kind === "refreshed" && e.token.expiresOn.getTime() > a.expiresOn.getTime())) as RefreshedEvent;
    w.close();
    // The provider's subscription is on the same connection and got the
    // event in the same read; a round trip to the server makes sure it ran.
    await nc.flush();

    const pushed = await tokens.token();
    assert.equal(counted.requests(), 1, "the pushed token was served without a request");
    assert.equal(pushed.accessToken, ev.token.accessToken);
    assert.notEqual(pushed.accessToken, a.accessToken);
  } finally {
    await tokens.close();
  }
  await assert.rejects(tokens.token(), /closed/);
});

test("TokenProvider passes a refusal on and asks again next time", async () => {
  const counted = counting(nc);
  const wrong = "not-the-demo-password";
  const tokens = new TokenProvider(counted.nc, { username: DEMO_USER, password: wrong }, { minTtl: 1, timeout: REQUEST_TIMEOUT });
  await assert.rejects(tokens.token(), brokerError(Code.Rejected, "invalid_grant", wrong));
  await assert.rejects(tokens.token(), brokerError(Code.Rejected, "invalid_grant"));
  assert.equal(counted.requests(), 2);
  await tokens.close();
  assert.throws(() => new TokenProvider(nc, { credential: DEMO_APP }, { minTtl: 1.5 }), RangeError);
});

test("the broker stops on SIGTERM", async () => {
  await nc.close();
  const b = broker!;
  broker = undefined;
  const { code, signal } = await b.stop();
  assert.equal(signal, null, `killed by ${signal}:\n${b.log()}`);
  assert.equal(code, 0, `exit code ${code}:\n${b.log()}`);
});
