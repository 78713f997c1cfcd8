// Runs the real broker for the tests: `tokenbroker demo`, with its embedded
// NATS server on a free loopback port and its built-in identity provider.
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

/** The demo's identities (cmd/tokenbroker/demo.go). */
export const DEMO_USER = "demo@tokenbroker.example";
export const DEMO_PASSWORD = "demo-password";
export const DEMO_APP = "demo-app";

/** The demo IdP's token lifetime: short, so that refreshes come within seconds. */
export const LIFETIME_SECONDS = 3;

const MODULE = "module github.com/tokenbroker/tokenbroker";

/** Bounds on every wait, generous for a loaded CI machine. */
const BUILD_TIMEOUT = 10 * 60_000;
const START_TIMEOUT = 60_000;
const STOP_TIMEOUT = 30_000;

export interface Broker {
  /** The NATS URL the demo printed. */
  readonly url: string;
  /** Stops the broker with SIGTERM and returns how it exited. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The broker's log so far, for failure messages. */
  log(): string;
}

/** Rejects with what after ms milliseconds unless p settles first. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** The module root: the directory above this file whose go.mod is the broker's. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const gomod = join(dir, "go.mod");
    if (existsSync(gomod) && readFileSync(gomod, "utf8").startsWith(MODULE)) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error("cannot find the tokenbroker module above the tests; set TOKENBROKER_BIN");
    dir = up;
  }
}

/** TOKENBROKER_BIN, else a binary built into dir with the go tool. */
async function binary(dir: string): Promise<string> {
  const fromEnv = process.env.TOKENBROKER_BIN;
  if (fromEnv) return fromEnv;
  const bin = join(dir, "tokenbroker");
  try {
    await promisify(execFile)("go", ["build", "-o", bin, "./cmd/tokenbroker"], { cwd: repoRoot(), timeout: BUILD_TIMEOUT });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`go build ./cmd/tokenbroker failed (set TOKENBROKER_BIN to use a built binary): ${e.stderr || e.message}`);
  }
  return bin;
}

/** Starts `tokenbroker demo` and waits for the NATS URL it prints. */
export async function startBroker(): Promise<Broker> {
  const dir = await mkdtemp(join(tmpdir(), "tokenbroker-ts-"));
  const bin = await binary(dir);
  // Only PATH and HOME from the caller's environment: a NATS_URL,
  // SUBJECT_PREFIX or TOKENBROKER_CONFIG there would make this another broker.
  const child: ChildProcess = spawn(
    bin,
    ["demo", "--nats-listen", "127.0.0.1:0", "--http-addr", "", "--lifetime", `${LIFETIME_SECONDS}s`, "--data-dir", join(dir, "data")],
    { cwd: dir, env: { PATH: process.env.PATH ?? "", HOME: dir }, stdio: ["ignore", "pipe", "pipe"] },
  );
  const killOnExit = () => child.kill("SIGKILL");
  process.on("exit", killOnExit);

  let stdout = "";
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (s: string) => {
    // The tail is enough to say why it failed.
    stderr = (stderr + s).slice(-64 * 1024);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  const url = new Promise<string>((resolve, reject) => {
    child.once("error", reject);
    child.stdout?.setEncoding("utf8").on("data", (s: string) => {
      stdout += s;
      const m = /NATS server:\s+(nats:\/\/\S+)/.exec(stdout);
      if (m?.[1]) resolve(m[1]);
    });
    void exited.then(({ code, signal }) => reject(new Error(`tokenbroker demo exited (${code ?? signal}) before serving:\n${stderr}`)));
  });

  let stopped: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      try {
        return await within(exited, STOP_TIMEOUT, "tokenbroker demo stopping on SIGTERM");
      } catch (err) {
        child.kill("SIGKILL");
        throw err;
      } finally {
        process.off("exit", killOnExit);
        await rm(dir, { recursive: true, force: true });
      }
    })();
    return stopped;
  };

  try {
    const u = await within(url, START_TIMEOUT, "tokenbroker demo printing its NATS URL");
    return { url: u, stop, log: () => stderr };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
