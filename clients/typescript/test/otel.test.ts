// W3C trace context: with @opentelemetry/api in the application (here with a minimal context
// manager and traceparent propagator registered, as an SDK would), every call carries the
// active span's context.
import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import { after, before, test } from "node:test";
import { context, propagation, ROOT_CONTEXT, trace, TraceFlags } from "@opentelemetry/api";
import type { Context, ContextManager, TextMapPropagator } from "@opentelemetry/api";
import { BatonClient } from "@baton/client";
import { rejection, ScriptedServer } from "./helpers.js";

class AlsContextManager implements ContextManager {
  private readonly als = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.als.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.als.run(ctx, () => fn.call(thisArg, ...args));
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.als.disable();
    return this;
  }
}

const traceparent: TextMapPropagator = {
  inject(ctx, carrier, setter) {
    const sc = trace.getSpanContext(ctx);
    if (sc) setter.set(carrier, "traceparent", `00-${sc.traceId}-${sc.spanId}-0${sc.traceFlags}`);
  },
  extract: (ctx) => ctx,
  fields: () => ["traceparent"],
};

const srv = new ScriptedServer();
before(async () => {
  context.setGlobalContextManager(new AlsContextManager());
  propagation.setGlobalPropagator(traceparent);
  await srv.start();
});
after(() => srv.close());

test("the active span's trace context is sent as traceparent", async () => {
  const client = new BatonClient(srv.target);
  try {
    const span = { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: TraceFlags.SAMPLED };
    srv.answers = [{ status: 5, message: "nope" }, { status: 5, message: "nope" }];
    await context.with(trace.setSpanContext(ROOT_CONTEXT, span), () => rejection(client.getSession({ sessionKey: "s" })));
    assert.equal(srv.seen.at(-1)!.headers["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    await rejection(client.getSession({ sessionKey: "s" }));
    assert.equal(srv.seen.at(-1)!.headers["traceparent"], undefined, "no span, no header");
  } finally {
    await client.close();
  }
});
