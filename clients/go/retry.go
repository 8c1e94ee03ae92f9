package baton

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/baton-dev/baton/clients/go/batonv1"
)

// RetryPolicy says how often and how patiently failed calls are retried and broken streams
// resumed. Attempt n (n >= 2) waits a random delay between half and all of
// min(InitialBackoff * Multiplier^(n-2), MaxBackoff), or the server's RetryInfo delay when
// that is longer. A stream counts attempts since the last item it delivered.
type RetryPolicy struct {
	// MaxAttempts is the number of tries of a call, the first included (1: no retry).
	MaxAttempts int
	// InitialBackoff is the delay before the second attempt.
	InitialBackoff time.Duration
	// MaxBackoff caps the delay between attempts.
	MaxBackoff time.Duration
	// Multiplier grows the delay from one attempt to the next.
	Multiplier float64
}

// DefaultRetryPolicy is used unless WithRetryPolicy says otherwise: 8 attempts, 100ms to 5s
// apart (about 10s in all, enough for a restart of the server).
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts:    8,
	InitialBackoff: 100 * time.Millisecond,
	MaxBackoff:     5 * time.Second,
	Multiplier:     2,
}

// backoff returns the delay before attempt (2, 3, ...).
func (p RetryPolicy) backoff(attempt int, serverDelay time.Duration) time.Duration {
	d := float64(p.InitialBackoff)
	for i := 2; i < attempt; i++ {
		d *= p.Multiplier
		if d >= float64(p.MaxBackoff) {
			break
		}
	}
	if limit := float64(p.MaxBackoff); limit > 0 && d > limit {
		d = limit
	}
	// "Equal jitter": somewhere in [d/2, d].
	d = d/2 + rand.Float64()*d/2
	if delay := time.Duration(d); delay > serverDelay {
		return delay
	}
	return serverDelay
}

// safeToRepeat lists the RPCs that may be sent again after an answer was lost: the reads,
// AppendEntries, CreateSession, ForkSession and RequestHandoff (idempotency key: a repeat
// returns the first call's result), the handoff transitions (repeated on a handoff already
// there, they return it unchanged) and UpdateSession (sets values). The others are retried
// only when the server says it did nothing.
var safeToRepeat = map[string]bool{
	batonv1.ContextService_CreateSession_FullMethodName:        true,
	batonv1.ContextService_ForkSession_FullMethodName:          true,
	batonv1.HandoffService_RequestHandoff_FullMethodName:       true,
	batonv1.HandoffService_AcceptHandoff_FullMethodName:        true,
	batonv1.HandoffService_RejectHandoff_FullMethodName:        true,
	batonv1.HandoffService_CompleteHandoff_FullMethodName:      true,
	batonv1.HandoffService_CancelHandoff_FullMethodName:        true,
	batonv1.ContextService_GetSession_FullMethodName:           true,
	batonv1.ContextService_ListSessions_FullMethodName:         true,
	batonv1.ContextService_UpdateSession_FullMethodName:        true,
	batonv1.ContextService_AppendEntries_FullMethodName:        true,
	batonv1.ContextService_ListEntries_FullMethodName:          true,
	batonv1.ContextService_StreamEntries_FullMethodName:        true,
	batonv1.ContextService_GetContextWindow_FullMethodName:     true,
	batonv1.ContextService_SearchEntries_FullMethodName:        true,
	batonv1.HandoffService_GetHandoff_FullMethodName:           true,
	batonv1.HandoffService_ListHandoffs_FullMethodName:         true,
	batonv1.HandoffService_WatchHandoffs_FullMethodName:        true,
	batonv1.HandoffService_StreamHandoffContext_FullMethodName: true,
}

// retryable reports whether err may be retried for method, and the delay the server asked for.
func retryable(method string, err error) (bool, time.Duration) {
	st, ok := status.FromError(err)
	if !ok {
		return false, 0
	}
	var delay time.Duration
	be := fromStatus(st)
	delay = be.RetryDelay
	switch st.Code() {
	case codes.ResourceExhausted:
		return true, delay
	case codes.Unavailable:
		// A server-sent UNAVAILABLE with RetryInfo did nothing; one without may be a lost
		// connection after the request was handled.
		return safeToRepeat[method] || be.hasRetryInfo(), delay
	}
	return false, 0
}

func (e *Error) hasRetryInfo() bool {
	for _, d := range e.status.Proto().GetDetails() {
		if d.GetTypeUrl() == "type.googleapis.com/google.rpc.RetryInfo" {
			return true
		}
	}
	return false
}

// sleep waits d or until ctx ends; it reports whether the full delay passed and the context
// still has time left after it.
func sleep(ctx context.Context, d time.Duration) bool {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// unaryInterceptor adds the headers and the default deadline, retries as the policy says,
// keeps the log position the answer carries (LogPosition) and turns every failure into an *Error.
func (c *Client) unaryInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ctx = c.outgoing(ctx)
	if _, ok := ctx.Deadline(); !ok && c.opts.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.timeout)
		defer cancel()
	}
	var header metadata.MD
	opts = append(opts[:len(opts):len(opts)], grpc.Header(&header))
	for attempt := 1; ; attempt++ {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err == nil {
			c.notePosition(header)
			return nil
		}
		if ctx.Err() != nil || attempt >= c.opts.retry.MaxAttempts {
			return asError(err)
		}
		ok, serverDelay := retryable(method, err)
		if !ok || !sleep(ctx, c.opts.retry.backoff(attempt+1, serverDelay)) {
			return asError(err)
		}
	}
}

// streamInterceptor adds the headers to every stream.
func (c *Client) streamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(c.outgoing(ctx), desc, cc, method, opts...)
	if err != nil {
		return nil, asError(err)
	}
	return s, nil
}
