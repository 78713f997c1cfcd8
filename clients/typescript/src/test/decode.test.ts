// decodeReply on answers the demo broker does not give: the cases of the Go
// client's wire.DecodeReply, so that both clients read an answer alike.
import { test } from "node:test";
import assert from "node:assert/strict";
import { headers } from "@nats-io/transport-node";

import { decodeReply, TokenBrokerError } from "../index.js";

function msg(hdrs: Record<string, string> | undefined, body: string) {
  let h;
  if (hdrs) {
    h = headers();
    for (const [k, v] of Object.entries(hdrs)) h.set(k, v);
  }
  return { headers: h, data: new TextEncoder().encode(body) };
}

const CODE = "Nats-Service-Error-Code";
const DESC = "Nats-Service-Error";

test("a reply", () => {
  const tok = decodeReply(
    msg(undefined, '{"accesstoken":"tok","expires_on":"1526704330","action":"retrieved new token","token_type":"Bearer","expires_in":3599,"credential_id":"x"}'),
  );
  assert.equal(tok.accessToken, "tok");
  assert.equal(tok.expiresOn.getTime(), 1526704330_000);
  assert.equal(tok.expiresIn, 3599);
  assert.equal(tok.action, "retrieved new token");
  assert.equal(tok.credentialId, "x");
});

test("a reply without expires_on expires expires_in from now", () => {
  const before = Date.now();
  const tok = decodeReply(msg(undefined, '{"accesstoken":"tok","expires_in":60}'));
  assert.ok(tok.expiresOn.getTime() >= before + 60_000 && tok.expiresOn.getTime() <= Date.now() + 60_000);
  assert.equal(tok.tokenType, "Bearer");
});

for (const [name, hdrs, body, want] of [
  [
    "the body's words win over the header's",
    { [DESC]: "short", [CODE]: "401" },
    '{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}',
    { code: 401, error: "invalid_client", description: "AADSTS7000215: Invalid client secret provided.", retryAfter: 0 },
  ],
  ["header only: description from the header, error from the code", { [DESC]: "throttled", [CODE]: "503" }, "", { code: 503, error: "temporarily_unavailable", description: "throttled", retryAfter: 0 }],
  [
    "retry_after in the body",
    { [CODE]: "503", "Retry-After": "7" },
    '{"error":"temporarily_unavailable","error_description":"IdP throttling","retry_after":30}',
    { code: 503, error: "temporarily_unavailable", description: "IdP throttling", retryAfter: 30 },
  ],
  [
    "Retry-After in the header only",
    { [CODE]: "503", "Retry-After": " 7 " },
    '{"error":"temporarily_unavailable","error_description":"IdP throttling"}',
    { code: 503, error: "temporarily_unavailable", description: "IdP throttling", retryAfter: 7 },
  ],
  ["a Retry-After that is no number of seconds", { [CODE]: "503", "Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT" }, "", { code: 503, error: "temporarily_unavailable", description: "", retryAfter: 0 }],
  ["a code that is no number", { [CODE]: "teapot", [DESC]: "odd" }, "", { code: 500, error: "server_error", description: "odd", retryAfter: 0 }],
  ["an error body without the headers", undefined, '{"error":"invalid_request","error_description":"bad"}', { code: 500, error: "invalid_request", description: "bad", retryAfter: 0 }],
  ["not JSON", undefined, "<html>", { code: 502, error: "server_error" }],
  ["no accesstoken", undefined, '{"expires_on":"1"}', { code: 502, error: "server_error", description: "the broker's reply has no accesstoken" }],
  ["no expiry", undefined, '{"accesstoken":"secret-token"}', { code: 502, error: "server_error" }],
] as const) {
  test(`an error: ${name}`, () => {
    assert.throws(
      () => decodeReply(msg(hdrs, body)),
      (err: unknown) => {
        assert.ok(err instanceof TokenBrokerError);
        for (const [k, v] of Object.entries(want)) assert.equal(err[k as keyof typeof want], v, `${k} of ${err.message}`);
        assert.ok(!err.message.includes("secret-token"));
        return true;
      },
    );
  });
}
