// Package baton is the Go client of Baton, the gRPC context and handoff service for AI agents.
//
// Dial a server, then call one method per RPC of baton.v1.ContextService and
// baton.v1.HandoffService. Each method takes the generated request message from package
// batonv1 and returns the generated response:
//
//	c, err := baton.Dial(ctx, "localhost:50051", baton.WithTenant("acme"))
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	s, err := c.CreateSession(ctx, &batonv1.CreateSessionRequest{Agent: "planner"})
//
// What the client adds over the raw stubs in batonv1:
//
//   - Safe retries. UNAVAILABLE and RESOURCE_EXHAUSTED answers (and a connection lost before
//     an answer) are retried with exponential backoff and jitter, honouring the server's
//     google.rpc.RetryInfo, for the reads and for AppendEntries, which gets a fresh
//     idempotency key when it has none and keeps it across attempts, so a retry never writes
//     twice. The other writes are retried only when the server says it did nothing (RetryInfo
//     on UNAVAILABLE, or RESOURCE_EXHAUSTED). See [RetryPolicy].
//   - Streams that resume. [Client.StreamEntries] and [Client.WatchHandoffs] are Go 1.23
//     iterators; when the server goes away (restart, shutdown, network) they reconnect and
//     continue after the last seq or cursor they delivered, so a loop sees every entry and
//     event exactly once, in order.
//   - One error type. Every failure of a call is an [*Error] carrying the canonical code name
//     ("NOT_FOUND", "INVALID_ARGUMENT", ...), the message and the field violations of a
//     google.rpc.BadRequest; use errors.As.
//   - Deadlines. A unary call whose context has no deadline gets the client's default timeout
//     (10s, see [WithTimeout]).
//   - Headers. [WithTenant] sends x-baton-tenant and [WithAPIKey] sends
//     "authorization: Bearer <key>" on every call.
//
// OpenTelemetry: pass otelgrpc's stats handler through [WithDialOptions]
// (grpc.WithStatsHandler(otelgrpc.NewClientHandler())) to propagate W3C trace context.
package baton
