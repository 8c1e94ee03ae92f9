// The quickstart example, compiled against the installed package, runs against a real batond.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { Batond } from "./helpers.js";

let server: Batond;
before(async () => {
  server = await Batond.start();
});
after(async () => {
  await server.dispose();
});

function runExample(name: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = fileURLToPath(new URL(`../examples/${name}.js`, import.meta.url));
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [script],
      { env: { ...process.env, BATON_TARGET: server.target }, timeout: 60_000 },
      (_err, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }),
    );
  });
}

test("examples/quickstart.ts runs end to end", async () => {
  const { code, stdout, stderr } = await runExample("quickstart");
  assert.equal(code, 0, `quickstart failed:\n${stdout}\n${stderr}`);
  assert.match(stdout, /session \S+ opened by planner/);
  assert.match(stdout, /streamed #1 planner: Migrate the orders table to v2/);
  assert.match(stdout, /streamed #3 planner: Schema done; the backfill is left/);
  assert.match(stdout, /appended seqs 1\.\.3/);
  assert.match(stdout, /coder accepted: "Run the backfill and verify the row counts"/);
  assert.match(stdout, /summary: /);
  assert.match(stdout, /context #3 planner: Schema done; the backfill is left/);
  assert.match(stdout, /is now owned by coder/);
});

test("the README's ten lines run", async () => {
  const { code, stdout, stderr } = await runExample("ten-lines");
  assert.equal(code, 0, `ten-lines failed:\n${stdout}\n${stderr}`);
  const lines = stdout.trim().split("\n");
  assert.equal(lines[0], "1 Plan: migrate", "the stream replays the entry");
  assert.ok(lines.some((l) => l.startsWith("0 ")), "the context package starts with the summary (seq 0)");
  assert.equal(lines.at(-1), "1 Plan: migrate", "and ends with the entry");
});
