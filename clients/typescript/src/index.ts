/**
 * The TypeScript client of tokenbroker: OAuth2 access tokens from a token
 * broker over NATS request-reply, and the tokens the broker pushes on
 * `token.refreshed.<credential_id>`.
 *
 * - {@link getToken} is one request and one reply.
 * - {@link TokenProvider} holds one credential's token, takes the tokens the
 *   broker refreshes ahead of expiry without asking again, and asks only when
 *   it has none or the one it has is about to expire (the Go client's
 *   TokenSource).
 * - {@link watchTokens} iterates over a credential's `token.refreshed` and
 *   `token.failed` events.
 *
 * Every refusal is a {@link TokenBrokerError} whose `code` is one of the
 * contract's codes (401 rejected by the IdP, 404 unknown credential, ...).
 *
 * Access tokens are secrets. This module never logs, and a {@link Token}
 * hides its access token from `JSON.stringify`, `console.log`,
 * `util.inspect`, string conversion and object spread; read it through
 * `token.accessToken` or `token.authorization` only where it is sent.
 *
 * @module
 */
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { errors as natsErrors, Match } from "@nats-io/transport-node";

/** The broker's default subject prefix (its `SUBJECT_PREFIX`). */
export const DEFAULT_SUBJECT_PREFIX = "token";

/**
 * How long one request may take, in milliseconds, when no `timeout` is given.
 * It is a little longer than the broker's own REQUEST_TIMEOUT (30 s by
 * default), so that a slow IdP shows up as the broker's 504 rather than the
 * client's.
 */
export const DEFAULT_TIMEOUT = 35_000;

/**
 * How many seconds before its expiry a {@link TokenProvider} stops handing
 * out a token and asks for a new one, when no `minTtl` is given: time for
 * clock skew and for the request the token goes on.
 */
export const DEFAULT_MIN_TTL = 30;

/** The broker's largest `min_ttl`, a day, in seconds. */
export const MAX_MIN_TTL = 86_400;

/** The `action` phrases of a reply or event, letter for letter. */
export const Action = {
  New: "retrieved new token",
  Existing: "returned existing token",
  Refreshed: "refreshed existing token",
  ReplacedExpired: "retrieved new token to replace expired token",
} as const;

/** The contract's error codes: {@link TokenBrokerError.code}. */
export const Code = {
  /** Malformed or invalid request. */
  InvalidRequest: 400,
  /** The IdP rejected the credentials; its own error and description are passed through. */
  Rejected: 401,
  /** Unknown named credential. */
  NotFound: 404,
  /** Request over 64 KiB. */
  TooLarge: 413,
  /** Too many refused sign-ins of one username; `retryAfter` says when to try again. */
  TooMany: 429,
  /** A broker bug, or an error answer that carried no code. */
  Internal: 500,
  /** The IdP (or the broker) answered with something unusable. */
  BadGateway: 502,
  /** The IdP is unreachable or throttling with no valid cached token, or no broker answers. */
  Unavailable: 503,
  /** The broker could not answer in time, or no answer came in time. */
  Timeout: 504,
} as const;

/**
 * Whose token to ask for: a named credential of the broker (its
 * TOKENBROKER_CONFIG), or a username and password served with the broker's
 * default profile.
 */
export type Credentials =
  | { credential: string; username?: undefined; password?: undefined }
  | { username: string; password: string; credential?: undefined };

/** Options of {@link getToken}. */
export interface GetTokenOptions {
  /**
   * Whole seconds the returned token must stay valid at least (`min_ttl`,
   * 0 to {@link MAX_MIN_TTL}). The broker answers 400 when the IdP's tokens
   * do not live that long.
   */
  minTtl?: number;
  /** Skip the broker's cache (`force_refresh`): for a caller whose token a resource refused. */
  forceRefresh?: boolean;
  /**
   * A claims challenge a resource answered with (the `claims` of its
   * `WWW-Authenticate` header, base64 or decoded JSON): the broker skips its
   * cache and asks the IdP with it (continuous access evaluation).
   */
  claims?: string;
  /** Milliseconds to wait for the answer; {@link DEFAULT_TIMEOUT} when absent or not positive. */
  timeout?: number;
  /** The broker's SUBJECT_PREFIX; {@link DEFAULT_SUBJECT_PREFIX} when absent or empty. */
  subjectPrefix?: string;
}

/** Options of {@link watchTokens}. */
export interface WatchOptions {
  /** The broker's SUBJECT_PREFIX; {@link DEFAULT_SUBJECT_PREFIX} when absent or empty. */
  subjectPrefix?: string;
  /** Milliseconds to wait for the NATS server to register the subscriptions; {@link DEFAULT_TIMEOUT} when absent. */
  timeout?: number;
}

/** Options of {@link TokenProvider}. */
export interface TokenProviderOptions {
  /**
   * Whole seconds before its expiry at which a token is no longer handed out
   * (default {@link DEFAULT_MIN_TTL}). It is also sent as `min_ttl`, so that
   * the broker never answers with a token already inside the margin. Keep it
   * below the IdP's token lifetime: the broker refuses a `min_ttl` it cannot
   * meet with a 400.
   */
  minTtl?: number;
  /** Milliseconds each request may take; {@link DEFAULT_TIMEOUT} when absent or not positive. */
  timeout?: number;
  /** The broker's SUBJECT_PREFIX; {@link DEFAULT_SUBJECT_PREFIX} when absent or empty. */
  subjectPrefix?: string;
}

const inspectCustom = Symbol.for("nodejs.util.inspect.custom");

/** The fields of a {@link Token}. */
export interface TokenInit {
  accessToken: string;
  tokenType: string;
  expiresOn: Date;
  expiresIn: number;
  action: string;
  credentialId: string;
}

/**
 * An access token from the broker, from a reply or a `token.refreshed` event.
 * It is immutable.
 *
 * The access token is a secret, so it is not an own property: it is left out
 * of `JSON.stringify(token)` (see {@link Token.toJSON}), `console.log`,
 * `util.inspect`, `String(token)`, `{...token}` and `structuredClone`. Read
 * it with {@link Token.accessToken} or {@link Token.authorization}.
 */
export class Token {
  readonly #accessToken: string;
  readonly #expiresAt: number;
  /** The token type, `Bearer` unless the IdP said otherwise. */
  readonly tokenType: string;
  /** Seconds the token had left when the broker answered or published it. */
  readonly expiresIn: number;
  /** How the broker got it: one of {@link Action}'s phrases. */
  readonly action: string;
  /**
   * The credential's id, the suffix of its event subjects: a named
   * credential's name, or `u-` and a keyed hash for a username.
   */
  readonly credentialId: string;

  constructor(init: TokenInit) {
    this.#accessToken = init.accessToken;
    this.#expiresAt = init.expiresOn.getTime();
    this.tokenType = init.tokenType;
    this.expiresIn = init.expiresIn;
    this.action = init.action;
    this.credentialId = init.credentialId;
    Object.freeze(this);
  }

  /** The access token: a secret, to send and never to log. */
  get accessToken(): string {
    return this.#accessToken;
  }

  /** The value of an `Authorization` header: `Bearer <access token>`. */
  get authorization(): string {
    return `${this.tokenType} ${this.#accessToken}`;
  }

  /** When the token expires (a new Date each time: the token never changes). */
  get expiresOn(): Date {
    return new Date(this.#expiresAt);
  }

  /** Whether the token stays valid for more than `seconds` from `now` (milliseconds since the epoch). */
  validFor(seconds: number, now: number = Date.now()): boolean {
    return now + seconds * 1000 < this.#expiresAt;
  }

  /** The token without its access token, for logs and JSON. */
  toJSON(): Record<string, string | number> {
    return {
      accessToken: "[redacted]",
      tokenType: this.tokenType,
      expiresOn: new Date(this.#expiresAt).toISOString(),
      expiresIn: this.expiresIn,
      action: this.action,
      credentialId: this.credentialId,
    };
  }

  /** A description without the access token. */
  toString(): string {
    return `Token(${this.credentialId}, ${this.tokenType}, expires ${new Date(this.#expiresAt).toISOString()})`;
  }

  /** What console.log and util.inspect show: {@link Token.toJSON}. */
  [inspectCustom](_depth: number, options: unknown, inspect?: (value: unknown, options: unknown) => string): unknown {
    return inspect ? `Token ${inspect(this.toJSON(), options)}` : this.toJSON();
  }
}

/**
 * The error of a refused or failed request. `code` is one of {@link Code}'s,
 * `error` the OAuth error (`invalid_grant`, `unknown_credential`, ...) and
 * `description` its `error_description`: for an IdP's refusal both are the
 * IdP's own words. None of them, nor the message, ever holds a secret, a token
 * or a username.
 *
 * When no broker answered, `code` is 503 (no broker listens, or the
 * connection is unusable) or 504 (no answer in time), and `cause` is the NATS
 * client's error.
 */
export class TokenBrokerError extends Error {
  /** One of the contract's codes ({@link Code}), the `Nats-Service-Error-Code` header. */
  readonly code: number;
  /** The OAuth error code, the body's `error`. */
  readonly error: string;
  /** The body's `error_description`, else the `Nats-Service-Error` header. */
  readonly description: string;
  /** Seconds to wait before asking again (503, 429); 0 when unknown. */
  readonly retryAfter: number;

  constructor(code: number, error: string, description = "", options: { retryAfter?: number; cause?: unknown } = {}) {
    let message = `tokenbroker: ${code} ${error}`;
    if (description) message += `: ${description}`;
    if (options.cause instanceof Error && options.cause.message) message += `: ${options.cause.message}`;
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "TokenBrokerError";
    this.code = code;
    this.error = error;
    this.description = description;
    this.retryAfter = options.retryAfter ?? 0;
  }
}

/** The OAuth error that goes with a code when the answer gave none. */
function oauthFor(code: number): string {
  switch (code) {
    case Code.InvalidRequest:
    case Code.TooLarge:
      return "invalid_request";
    case Code.Rejected:
      return "invalid_grant";
    case Code.NotFound:
      return "unknown_credential";
    case Code.Unavailable:
    case Code.Timeout:
    case Code.TooMany:
      return "temporarily_unavailable";
    default:
      return "server_error";
  }
}

// The micro service's error headers, and Retry-After, which the broker adds
// to a 503 for callers that read only headers.
const ERROR_HEADER = "Nats-Service-Error";
const ERROR_CODE_HEADER = "Nats-Service-Error-Code";
const RETRY_AFTER_HEADER = "Retry-After";

// A named credential's name, and so a subject token: what the broker's
// configuration accepts.
const CREDENTIAL_NAME = /^[A-Za-z0-9_-]{1,64}$/;

const decoder = new TextDecoder();

function prefixOf(prefix: string | undefined): string {
  return prefix ? prefix : DEFAULT_SUBJECT_PREFIX;
}

function timeoutOf(timeout: number | undefined): number {
  return timeout !== undefined && timeout > 0 ? timeout : DEFAULT_TIMEOUT;
}

/** A positive whole number in a string, as Go's strconv.Atoi reads it; 0 otherwise. */
function positiveInt(s: string): number {
  const t = s.trim();
  if (!/^\+?\d+$/.test(t)) return 0;
  const n = Number(t);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

/** The JSON object in data, or undefined when data is not one. */
function jsonObject(data: Uint8Array): Record<string, unknown> | undefined {
  if (data.length === 0) return undefined;
  try {
    const v: unknown = JSON.parse(decoder.decode(data));
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    // The parser's message quotes the text, which may hold a token.
    return undefined;
  }
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function header(msg: Pick<Msg, "headers">, name: string): string {
  return msg.headers?.get(name, Match.IgnoreCase) ?? "";
}

function errorOf(msg: Pick<Msg, "data" | "headers">, codeHeader: string, descHeader: string): TokenBrokerError {
  const code = positiveInt(codeHeader) || Code.Internal;
  let error = "";
  let description = descHeader;
  let retryAfter = 0;
  const body = jsonObject(msg.data);
  if (body) {
    error = str(body.error);
    if (str(body.error_description)) description = str(body.error_description);
    if (typeof body.retry_after === "number" && Number.isSafeInteger(body.retry_after) && body.retry_after > 0) {
      retryAfter = body.retry_after;
    }
  }
  if (!retryAfter) retryAfter = positiveInt(header(msg, RETRY_AFTER_HEADER));
  return new TokenBrokerError(code, error || oauthFor(code), description, { retryAfter });
}

/**
 * A Token from a reply's or an event's fields: expires_on (Unix seconds, a
 * string), else expires_in seconds from now. undefined when neither is usable.
 */
function tokenOf(body: Record<string, unknown>, now: number): Token | undefined {
  let expiresAt = positiveInt(str(body.expires_on)) * 1000;
  const expiresIn = typeof body.expires_in === "number" && Number.isFinite(body.expires_in) ? Math.max(0, Math.trunc(body.expires_in)) : undefined;
  if (!expiresAt && expiresIn) expiresAt = now + expiresIn * 1000;
  if (!expiresAt) return undefined;
  return new Token({
    accessToken: str(body.accesstoken),
    tokenType: str(body.token_type) || "Bearer",
    expiresOn: new Date(expiresAt),
    expiresIn: expiresIn ?? Math.max(0, Math.floor((expiresAt - now) / 1000)),
    action: str(body.action),
    credentialId: str(body.credential_id),
  });
}

/**
 * Reads a broker's answer to a token request, as the Go client does: the
 * Token of a reply, or a thrown {@link TokenBrokerError}, which is
 * - the error in the micro error headers, when the answer has them: code
 *   from `Nats-Service-Error-Code` (500 when missing or not a number),
 *   error, description and retry_after from the JSON body, description
 *   falling back to `Nats-Service-Error`, retryAfter to `Retry-After`;
 * - the JSON body's error with code 500, for an error body without the headers;
 * - a 502 `server_error` for an answer that is neither (not JSON, no
 *   accesstoken, no usable expiry).
 *
 * getToken uses it; it is exported for callers that send requests themselves.
 */
export function decodeReply(msg: Pick<Msg, "data" | "headers">): Token {
  const codeHeader = header(msg, ERROR_CODE_HEADER);
  const descHeader = header(msg, ERROR_HEADER);
  if (codeHeader || descHeader) throw errorOf(msg, codeHeader, descHeader);
  const body = jsonObject(msg.data);
  if (!body) throw new TokenBrokerError(Code.BadGateway, "server_error", "the broker's reply is not a JSON object");
  if (!str(body.accesstoken)) {
    if (str(body.error)) throw errorOf(msg, "", "");
    throw new TokenBrokerError(Code.BadGateway, "server_error", "the broker's reply has no accesstoken");
  }
  const tok = tokenOf(body, Date.now());
  if (!tok) throw new TokenBrokerError(Code.BadGateway, "server_error", "the broker's reply has neither expires_on nor expires_in");
  return tok;
}

/**
 * The subject and body of a request: a named credential on its own subject,
 * `<prefix>.request.<name>`, which NATS permissions can grant a caller alone,
 * with a body of the options only; anything else on `<prefix>.request` (a
 * name that cannot be a subject token goes there too, for the broker to
 * refuse for what it is).
 */
function requestOf(creds: Credentials, opts: GetTokenOptions): { subject: string; body: string } {
  const prefix = prefixOf(opts.subjectPrefix);
  const options: Record<string, unknown> = {};
  if (opts.forceRefresh) options.force_refresh = true;
  if (opts.minTtl) options.min_ttl = opts.minTtl;
  if (opts.claims) options.claims = opts.claims;
  const name = creds.credential ?? "";
  if (name && !creds.username && !creds.password && CREDENTIAL_NAME.test(name)) {
    return { subject: `${prefix}.request.${name}`, body: JSON.stringify(options) };
  }
  // Empty fields are left out, as the Go client leaves them out.
  const req: Record<string, unknown> = {};
  if (creds.username) req.username = creds.username;
  if (creds.password) req.password = creds.password;
  if (name) req.credential = name;
  return { subject: `${prefix}.request`, body: JSON.stringify({ ...req, ...options }) };
}

/** The errors of a NATS error and its causes. */
function causes(err: unknown): Error[] {
  const out: Error[] = [];
  for (let e = err; e instanceof Error && out.length < 8; e = e.cause) out.push(e);
  return out;
}

/**
 * The TokenBrokerError of a request, subscription or flush that got no
 * answer: 503 when no broker listens or the connection is unusable, 504 when
 * the time ran out.
 */
function noReply(subject: string, err: unknown, what = "send the request on"): TokenBrokerError {
  if (err instanceof TokenBrokerError) return err;
  const all = causes(err);
  // Names as well as classes: the caller's connection may come from another
  // copy of the NATS client than this package's.
  if (all.some((e) => e instanceof natsErrors.NoRespondersError || e.name === "NoResponders" || e.name === "NoRespondersError")) {
    return new TokenBrokerError(Code.Unavailable, "temporarily_unavailable", `no broker answers on ${subject}`, { cause: err });
  }
  if (all.some((e) => e instanceof natsErrors.TimeoutError || e.name === "TimeoutError")) {
    return new TokenBrokerError(Code.Timeout, "temporarily_unavailable", `no answer from a broker on ${subject} in time`, { cause: err });
  }
  return new TokenBrokerError(Code.Unavailable, "temporarily_unavailable", `cannot ${what} ${subject}`, { cause: err });
}

/** Waits for p at most ms milliseconds, then rejects with the NATS client's TimeoutError. */
async function bounded<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new natsErrors.TimeoutError()), ms);
  });
  try {
    return await Promise.race([p, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Asks a broker for a token: a named credential on
 * `<prefix>.request.<name>`, a username and password on `<prefix>.request`.
 *
 * Throws a {@link TokenBrokerError}: the broker's refusal (401 the IdP
 * rejected the credentials, 404 unknown credential, 400 invalid request,
 * ...), 503 when no broker listens or the connection is unusable, 504 when no
 * answer came within `timeout`. The request is checked by the broker, not
 * here.
 *
 * ```ts
 * const tok = await getToken(nc, { credential: "crm-prod" });
 * await fetch(url, { headers: { Authorization: tok.authorization } });
 * ```
 */
export async function getToken(nc: NatsConnection, credentials: Credentials, opts: GetTokenOptions = {}): Promise<Token> {
  const { subject, body } = requestOf(credentials, opts);
  let msg: Msg;
  try {
    msg = await nc.request(subject, body, { timeout: timeoutOf(opts.timeout) });
  } catch (err) {
    throw noReply(subject, err);
  }
  return decodeReply(msg);
}

/** A `token.refreshed` event: a credential got a new token. */
export interface RefreshedEvent {
  readonly kind: "refreshed";
  /** `<prefix>.refreshed.<credential_id>` */
  readonly subject: string;
  /** A UUID per event, also its `Nats-Msg-Id` header. */
  readonly eventId: string;
  readonly credentialId: string;
  /** The new token; its `action` says how the broker got it. */
  readonly token: Token;
  readonly refreshedAt: Date;
}

/** A `token.failed` event: a refresh failed for good (for example `invalid_grant`). */
export interface FailedEvent {
  readonly kind: "failed";
  /** `<prefix>.failed.<credential_id>` */
  readonly subject: string;
  readonly eventId: string;
  readonly credentialId: string;
  /** The OAuth error. */
  readonly error: string;
  readonly description: string;
  readonly at: Date;
}

/**
 * An event that could not be read. It is delivered rather than dropped, so
 * that a watcher can tell a broker speaking another version of the wire
 * format from a quiet one. It carries no part of the event, which may hold a
 * token.
 */
export interface UnreadableEvent {
  readonly kind: "unreadable";
  readonly subject: string;
  /** What is wrong with it. */
  readonly problem: string;
}

/** What {@link watchTokens} yields. */
export type TokenEvent = RefreshedEvent | FailedEvent | UnreadableEvent;

function refreshedOf(msg: Msg): RefreshedEvent | UnreadableEvent {
  const body = jsonObject(msg.data);
  if (!body) return { kind: "unreadable", subject: msg.subject, problem: "refreshed event: not a JSON object" };
  if (!str(body.accesstoken)) return { kind: "unreadable", subject: msg.subject, problem: "refreshed event: no accesstoken" };
  const token = tokenOf(body, Date.now());
  if (!token) return { kind: "unreadable", subject: msg.subject, problem: "refreshed event: neither expires_on nor expires_in" };
  return {
    kind: "refreshed",
    subject: msg.subject,
    eventId: str(body.event_id),
    credentialId: str(body.credential_id),
    token,
    refreshedAt: new Date(str(body.refreshed_at)),
  };
}

function failedOf(msg: Msg): FailedEvent | UnreadableEvent {
  const body = jsonObject(msg.data);
  if (!body) return { kind: "unreadable", subject: msg.subject, problem: "failed event: not a JSON object" };
  if (!str(body.error)) return { kind: "unreadable", subject: msg.subject, problem: "failed event: no error" };
  return {
    kind: "failed",
    subject: msg.subject,
    eventId: str(body.event_id),
    credentialId: str(body.credential_id),
    error: str(body.error),
    description: str(body.error_description),
    at: new Date(str(body.at)),
  };
}

/**
 * The events of a {@link watchTokens}, in the order they arrive. The
 * iteration ends when the subscriptions end: after `return()` (a `break` out
 * of `for await` calls it) or {@link TokenWatch.close}, or when the NATS
 * connection is drained or closed. A subscription the NATS server refuses
 * (a permissions violation) ends it with that error, thrown by `next()` once
 * the events before it are taken.
 */
export interface TokenWatch extends AsyncIterableIterator<TokenEvent> {
  /** Unsubscribes and ends the iteration; events not yet taken are dropped. */
  return(): Promise<IteratorResult<TokenEvent, undefined>>;
  /** Unsubscribes and ends the iteration; events not yet taken are dropped. Same as `return()`. */
  close(): void;
  /** Resolves when the subscriptions have ended. */
  readonly closed: Promise<void>;
}

type Taker = { resolve: (r: IteratorResult<TokenEvent, undefined>) => void; reject: (err: unknown) => void };

class Watch implements TokenWatch {
  readonly #subs: Subscription[] = [];
  // Events are a few per token lifetime, so a queue for a slow consumer
  // stays small.
  readonly #queue: TokenEvent[] = [];
  readonly #takers: Taker[] = [];
  #ended = false;
  #error: Error | undefined;
  #endedResolve!: () => void;
  readonly closed = new Promise<void>((resolve) => {
    this.#endedResolve = resolve;
  });

  attach(sub: Subscription): void {
    this.#subs.push(sub);
    // One subscription ending (the connection drained or closed, or a
    // permissions violation) ends the watch: half of it would miss events
    // silently.
    void sub.closed.then((err) => this.end(err instanceof Error ? err : undefined));
  }

  push(ev: TokenEvent): void {
    if (this.#ended) return;
    const taker = this.#takers.shift();
    if (taker) taker.resolve({ value: ev, done: false });
    else this.#queue.push(ev);
  }

  end(err?: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = err;
    for (const sub of this.#subs) {
      try {
        sub.unsubscribe();
      } catch {
        // Already closed with its connection.
      }
    }
    this.#endedResolve();
    for (const taker of this.#takers.splice(0)) this.#settle(taker);
  }

  #settle(taker: Taker): void {
    const err = this.#error;
    this.#error = undefined;
    if (err) taker.reject(err);
    else taker.resolve({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<TokenEvent, undefined>> {
    const ev = this.#queue.shift();
    if (ev) return Promise.resolve({ value: ev, done: false });
    return new Promise((resolve, reject) => {
      const taker = { resolve, reject };
      if (this.#ended) this.#settle(taker);
      else this.#takers.push(taker);
    });
  }

  return(): Promise<IteratorResult<TokenEvent, undefined>> {
    this.end();
    this.#queue.length = 0;
    this.#error = undefined;
    return Promise.resolve({ value: undefined, done: true });
  }

  close(): void {
    void this.return();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/**
 * Iterates over the `token.refreshed` and `token.failed` events of the
 * credential `credentialId` (a token's `credentialId`: a named credential's
 * name, or `u-...` for a username), or of every credential when it is empty.
 *
 * When the promise resolves, the subscriptions are registered with the NATS
 * server: no event published afterwards is missed. Events are not replayed:
 * to have the current token as well, ask with {@link getToken} afterwards.
 * The subscriptions survive reconnects, as NATS subscriptions do.
 *
 * Throws a {@link TokenBrokerError}: 400 for a credentialId that is not one
 * subject token (it has `.`, `*`, `>` or white space), 503 or 504 when the
 * subscriptions cannot be registered within `timeout`.
 *
 * ```ts
 * for await (const ev of await watchTokens(nc, "crm-prod")) {
 *   if (ev.kind === "refreshed") use(ev.token);
 * }
 * ```
 */
export async function watchTokens(nc: NatsConnection, credentialId = "", opts: WatchOptions = {}): Promise<TokenWatch> {
  if (/[.*>\s]/.test(credentialId)) {
    throw new TokenBrokerError(Code.InvalidRequest, "invalid_request", "a credential id is one subject token: no '.', '*', '>' or white space");
  }
  const prefix = prefixOf(opts.subjectPrefix);
  const id = credentialId || ">";
  const refreshed = `${prefix}.refreshed.${id}`;
  const failed = `${prefix}.failed.${id}`;
  const watch = new Watch();
  let subject = refreshed;
  try {
    for (const [s, read] of [
      [refreshed, refreshedOf],
      [failed, failedOf],
    ] as const) {
      subject = s;
      watch.attach(
        nc.subscribe(s, {
          callback: (err, msg) => {
            if (err) watch.end(err);
            else watch.push(read(msg));
          },
        }),
      );
    }
    await bounded(nc.flush(), timeoutOf(opts.timeout));
  } catch (err) {
    watch.end();
    throw noReply(subject, err, "subscribe to");
  }
  return watch;
}

/**
 * One credential's token, kept current: the Go client's TokenSource.
 *
 * {@link TokenProvider.token} returns the newest token it holds while that
 * token stays valid for more than `minTtl` seconds, and otherwise asks the
 * broker. After the first answer it subscribes to
 * `<prefix>.refreshed.<credential_id>`, so the tokens the broker refreshes
 * ahead of expiry arrive without a request: a consumer of a warm credential
 * sends no request after the first one. Concurrent calls that find no usable
 * token share one request.
 *
 * For a username and password, the provider keeps the password in memory
 * for as long as it lives: it needs it to ask again. Close it when done.
 *
 * ```ts
 * const tokens = new TokenProvider(nc, { credential: "crm-prod" });
 * const res = await fetch(url, { headers: { Authorization: (await tokens.token()).authorization } });
 * await tokens.close();
 * ```
 */
export class TokenProvider {
  readonly #nc: NatsConnection;
  readonly #credentials: Credentials;
  readonly #minTtl: number;
  readonly #timeout: number;
  readonly #prefix: string;
  #held: Token | undefined;
  #inflight: Promise<Token> | undefined;
  #sub: Subscription | undefined;
  #id: string | undefined;
  #closed = false;

  /**
   * Sends nothing yet: the first {@link TokenProvider.token} asks. Throws a
   * RangeError for a minTtl that is not whole seconds from 0 to
   * {@link MAX_MIN_TTL}.
   */
  constructor(nc: NatsConnection, credentials: Credentials, opts: TokenProviderOptions = {}) {
    const minTtl = opts.minTtl ?? DEFAULT_MIN_TTL;
    if (!Number.isInteger(minTtl) || minTtl < 0 || minTtl > MAX_MIN_TTL) {
      throw new RangeError(`tokenbroker: minTtl must be whole seconds from 0 to ${MAX_MIN_TTL}`);
    }
    this.#nc = nc;
    // A copy, so that a caller changing its object later changes nothing here.
    this.#credentials = { ...credentials };
    this.#minTtl = minTtl;
    this.#timeout = timeoutOf(opts.timeout);
    this.#prefix = prefixOf(opts.subjectPrefix);
  }

  /** The credential_id of the tokens, once the first answer came. */
  get credentialId(): string | undefined {
    return this.#id;
  }

  /**
   * A token valid for more than `minTtl` seconds: the one held, or a new one
   * from the broker, the request shared with concurrent callers. Throws
   * {@link getToken}'s errors, and an Error once the provider is closed.
   */
  async token(): Promise<Token> {
    if (this.#closed) throw new Error("tokenbroker: the TokenProvider is closed");
    const held = this.#held;
    if (held && held.validFor(this.#minTtl)) return held;
    this.#inflight ??= this.#fetch().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  /**
   * Unsubscribes from the events and forgets the token. {@link TokenProvider.token}
   * throws afterwards; a request in flight still answers its callers.
   * Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#held = undefined;
    this.#unsubscribe();
  }

  async #fetch(): Promise<Token> {
    const tok = await getToken(this.#nc, this.#credentials, {
      minTtl: this.#minTtl,
      timeout: this.#timeout,
      subjectPrefix: this.#prefix,
    });
    if (this.#closed) return tok;
    if (!this.#sub) await this.#subscribe(tok.credentialId);
    this.#keep(tok, true);
    // The answer, or a newer token pushed meanwhile.
    return this.#held ?? tok;
  }

  async #subscribe(id: string): Promise<void> {
    if (!CREDENTIAL_NAME.test(id)) {
      throw new TokenBrokerError(Code.BadGateway, "server_error", "the broker's reply has no usable credential_id");
    }
    const subject = `${this.#prefix}.refreshed.${id}`;
    try {
      this.#id = id;
      this.#sub = this.#nc.subscribe(subject, {
        callback: (err, msg) => {
          if (!err) this.#pushed(msg);
        },
      });
      // Registered with the server before the first token is handed out,
      // so that no refresh after it is missed.
      await bounded(this.#nc.flush(), this.#timeout);
    } catch (err) {
      this.#unsubscribe();
      throw noReply(subject, err, "subscribe to");
    }
    if (this.#closed) this.#unsubscribe();
  }

  #unsubscribe(): void {
    const sub = this.#sub;
    this.#sub = undefined;
    try {
      sub?.unsubscribe();
    } catch {
      // Already closed with its connection.
    }
  }

  /** Takes a token.refreshed event; one that cannot be read, is another credential's or older is dropped. */
  #pushed(msg: Msg): void {
    const ev = refreshedOf(msg);
    if (this.#closed || ev.kind !== "refreshed") return;
    if (ev.credentialId && ev.credentialId !== this.#id) return;
    this.#keep(ev.token, false);
  }

  /**
   * Holds tok when it expires later than the held token (or as late, for an
   * answer: orEqual), since answers and events may arrive in any order.
   */
  #keep(tok: Token, orEqual: boolean): void {
    const held = this.#held;
    const at = tok.expiresOn.getTime();
    const heldAt = held?.expiresOn.getTime() ?? 0;
    if (!held || at > heldAt || (orEqual && at === heldAt)) this.#held = tok;
  }
}
