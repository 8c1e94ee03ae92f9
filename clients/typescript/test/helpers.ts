// Test helpers: a real batond on the embedded store on free loopback ports, and two small TCP
// tools (a proxy that drops the first answer, a listener that never answers).
import { execFileSync, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A port that was free a moment ago (bind 0, read it, close). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function httpStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", () => resolve(0));
    req.setTimeout(1000, () => {
      req.destroy();
      resolve(0);
    });
  });
}

/** What a {@link Batond} gets besides its ports and data directory. */
export interface BatondExtra {
  env?: Record<string, string>;
  args?: string[];
}

/**
 * A batond on the test PostgreSQL (as the serving role, under row-level security: tests use a
 * tenant of their own) that reads from the held-back read replica scripts/test makes
 * (BATON_TEST_READ_REPLICA_URL): a read the replica serves misses every write made after the
 * replica was.
 */
export function startReplicaBatond(): Promise<Batond> {
  const need = (name: string): string => {
    const value = process.env[name];
    if (value === undefined || value === "") {
      throw new Error(`${name} is not set: run the suite with scripts/test clients-typescript, which makes the services`);
    }
    return value;
  };
  return Batond.start({
    env: {
      DATABASE_URL: need("BATON_TEST_APP_DATABASE_URL"),
      BATON_MIGRATE_DATABASE_URL: need("BATON_TEST_DATABASE_URL"),
      DATABASE_READ_URL: need("BATON_TEST_READ_REPLICA_URL"),
    },
    args: ["--read-replica-max-lag-ms", "3600000"],
  });
}

/** A batond process (on the embedded store unless told otherwise), restartable on the same ports and data. */
export class Batond {
  readonly dataDir: string;
  private proc: ChildProcess | undefined;
  private log = "";

  private constructor(
    readonly port: number,
    readonly adminPort: number,
    private readonly extra: BatondExtra,
  ) {
    this.dataDir = mkdtempSync(join(tmpdir(), "baton-ts-"));
  }

  /**
   * Starts a batond on free ports with a fresh data directory and waits until it is ready;
   * `extra` adds environment variables and arguments (e.g. a PostgreSQL store).
   */
  static async start(extra: BatondExtra = {}): Promise<Batond> {
    const b = new Batond(await freePort(), await freePort(), extra);
    try {
      await b.restart();
    } catch (err) {
      await b.dispose();
      throw err;
    }
    return b;
  }

  /** `127.0.0.1:<port>` */
  get target(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The server's stderr and stdout so far (for assertion messages). */
  get output(): string {
    return this.log;
  }

  /** (Re)starts the process on the same ports and data directory; resolves once /ready is 200. */
  async restart(): Promise<void> {
    if (this.proc !== undefined) throw new Error("batond is still running");
    const bin = process.env.BATOND_BIN;
    if (bin === undefined || bin === "") throw new Error("BATOND_BIN is not set");
    const env: NodeJS.ProcessEnv = { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" };
    delete env.DATABASE_URL;
    delete env.REDIS_URL;
    for (const k of Object.keys(env)) if (k.startsWith("BATON_")) delete env[k];
    Object.assign(env, this.extra.env ?? {});
    const proc = spawn(
      bin,
      [
        "--grpc-addr",
        `127.0.0.1:${this.port}`,
        "--admin-addr",
        `127.0.0.1:${this.adminPort}`,
        "--data-dir",
        this.dataDir,
        "--shutdown-grace-secs",
        "2",
        ...(this.extra.args ?? []),
      ],
      { env, stdio: ["ignore", "pipe", "pipe"] },
    );
    this.proc = proc;
    // Never leave a server behind, even when the test process dies on a failure.
    const reap = () => proc.kill("SIGKILL");
    process.once("exit", reap);
    proc.once("exit", () => process.removeListener("exit", reap));
    proc.stdout!.on("data", (d: Buffer) => (this.log += d.toString()));
    proc.stderr!.on("data", (d: Buffer) => (this.log += d.toString()));
    const started = Date.now();
    while (Date.now() - started < 60_000) {
      if (proc.exitCode !== null) {
        this.proc = undefined;
        throw new Error(`batond exited with ${proc.exitCode}:\n${this.log}`);
      }
      if ((await httpStatus(`http://127.0.0.1:${this.adminPort}/ready`)) === 200) return;
      await sleep(50);
    }
    throw new Error(`batond did not become ready in 60 s:\n${this.log}`);
  }

  /** Stops the process (SIGTERM: graceful shutdown; SIGKILL: a crash) and waits for its exit. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const proc = this.proc;
    if (proc === undefined) return;
    this.proc = undefined;
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
  }

  /** Stops the process and removes its data. */
  async dispose(): Promise<void> {
    await this.stop("SIGKILL");
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/**
 * A TCP proxy in front of a server speaking HTTP/2. While armed, the first time the server
 * starts an answer on a stream (a HEADERS frame on a stream other than 0) the proxy drops the
 * connection instead of relaying it, and disarms: the request reached the server and was
 * carried out, but the client never hears the answer.
 */
export class DropFirstAnswerProxy {
  /** Connections accepted so far. */
  connections = 0;
  /** Answers dropped so far (0 or 1). */
  dropped = 0;
  private armed = true;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly upstreamPort: number,
    readonly port: number,
  ) {
    this.server = net.createServer((client) => this.handle(client));
  }

  static async start(upstreamPort: number): Promise<DropFirstAnswerProxy> {
    const p = new DropFirstAnswerProxy(upstreamPort, await freePort());
    await new Promise<void>((resolve, reject) => {
      p.server.once("error", reject);
      p.server.listen(p.port, "127.0.0.1", () => resolve());
    });
    return p;
  }

  get target(): string {
    return `127.0.0.1:${this.port}`;
  }

  private handle(client: net.Socket): void {
    this.connections += 1;
    const upstream = net.connect(this.upstreamPort, "127.0.0.1");
    this.sockets.add(client);
    this.sockets.add(upstream);
    const kill = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on("error", kill);
    upstream.on("error", kill);
    client.on("close", kill);
    upstream.on("close", kill);
    client.pipe(upstream);
    // Server to client: relay frame by frame, so the drop happens at a frame boundary and no
    // byte of the answer gets through.
    let buf = Buffer.alloc(0);
    upstream.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3];
        const streamId = buf.readUInt32BE(5) & 0x7fffffff;
        if (this.armed && type === 0x1 && streamId !== 0) {
          this.armed = false;
          this.dropped += 1;
          kill();
          return;
        }
        client.write(buf.subarray(0, 9 + len));
        buf = buf.subarray(9 + len);
      }
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A TCP listener that accepts connections and never answers: calls to it can only time out. */
export class Blackhole {
  private readonly sockets = new Set<net.Socket>();
  private readonly server = net.createServer((s) => {
    this.sockets.add(s);
    s.on("error", () => undefined);
    s.on("close", () => this.sockets.delete(s));
  });

  private constructor(readonly port: number) {}

  static async start(): Promise<Blackhole> {
    const b = new Blackhole(await freePort());
    await new Promise<void>((resolve, reject) => {
      b.server.once("error", reject);
      b.server.listen(b.port, "127.0.0.1", () => resolve());
    });
    return b;
  }

  get target(): string {
    return `127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Reads an async iterable into an array until `n` items arrived (then stops the stream). */
export async function take<T>(iterable: AsyncIterable<T>, n: number): Promise<T[]> {
  const out: T[] = [];
  if (n <= 0) return out;
  for await (const item of iterable) {
    out.push(item);
    if (out.length >= n) break;
  }
  return out;
}

/** Resolves with the rejection of `p`; fails when `p` resolves. */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected the promise to reject, it resolved");
}

/** A request the scripted server received. */
export interface Seen {
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
  at: number;
}

/** A scripted answer: a status (with optional google.rpc.Status bytes) or a response message. */
export type Answer = { status: number; message?: string; details?: Uint8Array } | { ok: Uint8Array };

/**
 * A bare HTTP/2 listener that records each gRPC request and answers with the next scripted
 * answer: for checking what the client puts on the wire.
 */
export class ScriptedServer {
  readonly seen: Seen[] = [];
  answers: Answer[] = [];
  private readonly server: http2.Http2Server | http2.Http2SecureServer;

  /** A plain HTTP/2 listener, or a TLS one with the given key and certificate (PEM). */
  constructor(tls?: { key: string; cert: string }) {
    this.server = tls ? http2.createSecureServer({ key: tls.key, cert: tls.cert }) : http2.createServer();
  }

  async start(): Promise<void> {
    this.server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        this.seen.push({ headers, body: Buffer.concat(chunks), at: Date.now() });
        const answer = this.answers.shift() ?? { status: 12, message: "no scripted answer" };
        if ("ok" in answer) {
          const frame = Buffer.alloc(5 + answer.ok.length);
          frame.writeUInt32BE(answer.ok.length, 1);
          Buffer.from(answer.ok).copy(frame, 5);
          stream.respond({ ":status": 200, "content-type": "application/grpc+proto" }, { waitForTrailers: true });
          stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
          stream.end(frame);
          return;
        }
        const trailers: http2.OutgoingHttpHeaders = {
          ":status": 200,
          "content-type": "application/grpc+proto",
          "grpc-status": String(answer.status),
          "grpc-message": encodeURIComponent(answer.message ?? ""),
        };
        if (answer.details) trailers["grpc-status-details-bin"] = Buffer.from(answer.details).toString("base64");
        stream.respond(trailers, { endStream: true });
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", () => resolve()));
  }

  get target(): string {
    return `127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** A self-signed certificate for 127.0.0.1 and localhost, made with openssl. */
export function selfSignedCert(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), "baton-ts-tls-"));
  try {
    execFileSync(
      "openssl",
      [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
      ],
      { stdio: "ignore" },
    );
    return { key: readFileSync(join(dir, "key.pem"), "utf8"), cert: readFileSync(join(dir, "cert.pem"), "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
