#!/usr/bin/env node
// Runs the baton-mcp binary for this machine. npm installs exactly one of @baton/mcp's optional
// dependencies, @baton/mcp-<platform>-<arch> (their `os`, `cpu` and `libc` fields rule out the
// others); it holds the binary. This shim finds it, runs it on the same standard streams (the
// MCP client's stdio pipes reach the binary untouched), passes signals on, and exits as it did.
"use strict";

const { spawn } = require("node:child_process");

const pkg = `@baton/mcp-${process.platform}-${process.arch}`;
const exe = process.platform === "win32" ? "baton-mcp.exe" : "baton-mcp";

function musl() {
  if (process.platform !== "linux") return false;
  const report = process.report && process.report.getReport();
  return Boolean(report && report.header && !report.header.glibcVersionRuntime);
}

function binary() {
  // A binary of one's own (a platform without a package, a development build).
  if (process.env.BATON_MCP_BINARY) return process.env.BATON_MCP_BINARY;
  try {
    return require.resolve(`${pkg}/bin/${exe}`);
  } catch {
    const why = musl()
      ? "musl-based Linux (e.g. Alpine) has no prebuilt binary yet"
      : `the package ${pkg} is not installed: this platform has no prebuilt binary, or npm skipped optional dependencies (--omit=optional, --no-optional)`;
    console.error(
      `baton-mcp: ${why}. Install from PyPI instead (uvx baton-mcp), build it with ` +
        "`cargo install --path gateway`, or set BATON_MCP_BINARY to a baton-mcp binary.",
    );
    process.exit(1);
  }
}

const child = spawn(binary(), process.argv.slice(2), { stdio: "inherit", windowsHide: true });
const signals = ["SIGINT", "SIGTERM", "SIGHUP"];
for (const signal of signals) {
  process.on(signal, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  });
}
child.on("error", (error) => {
  console.error(`baton-mcp: cannot start ${error.path || "the binary"}: ${error.message}`);
  process.exit(1);
});
child.on("exit", (code, signal) => {
  if (signal) {
    // Die of the same signal, so the caller sees what the binary saw.
    for (const s of signals) process.removeAllListeners(s);
    process.kill(process.pid, signal);
  } else {
    process.exit(code === null ? 1 : code);
  }
});
