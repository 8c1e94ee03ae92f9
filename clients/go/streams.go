package baton

import (
	"context"
	"errors"
	"io"
	"iter"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/baton-dev/baton/clients/go/batonv1"
)

// StreamEntries streams a session's entries after req.AfterSeq and, with req.Follow, the ones
// appended later, as an iterator:
//
//	for e, err := range c.StreamEntries(ctx, &batonv1.StreamEntriesRequest{SessionKey: k, Follow: true}) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(e.GetSeq(), e.GetText())
//	}
//
// When the stream breaks with UNAVAILABLE (a server restart or shutdown, a lost connection) it
// is reopened after the last seq delivered, as the retry policy allows, so the loop sees every
// entry exactly once and in order. A non-nil error is yielded once, last. Cancel ctx (or break
// out of the loop) to stop a following stream.
func (c *Client) StreamEntries(ctx context.Context, req *batonv1.StreamEntriesRequest, opts ...grpc.CallOption) iter.Seq2[*batonv1.Entry, error] {
	return func(yield func(*batonv1.Entry, error) bool) {
		r := proto.Clone(req).(*batonv1.StreamEntriesRequest)
		limit := r.GetMaxEntries()
		var delivered uint32
		open := func(ctx context.Context) (grpc.ServerStreamingClient[batonv1.Entry], error) {
			if limit > 0 {
				r.MaxEntries = limit - delivered
			}
			return c.contexts.StreamEntries(ctx, r, opts...)
		}
		accept := func(e *batonv1.Entry) (deliver, done bool) {
			if e.GetSeq() <= r.GetAfterSeq() {
				return false, false // already delivered before a resume
			}
			r.AfterSeq = e.GetSeq()
			delivered++
			return true, limit > 0 && delivered >= limit
		}
		resume(ctx, c, batonv1.ContextService_StreamEntries_FullMethodName, open, accept, nil, yield)
	}
}

// WatchHandoffs streams an agent's handoff inbox as an iterator: the pending handoffs
// addressed to it first (unless req.AfterCursor is set), then every later event of the
// handoffs it sent or received, live. When the stream breaks with UNAVAILABLE it is reopened
// after the cursor of the last event delivered, so the loop sees every event exactly once. A
// non-nil error is yielded once, last; cancel ctx or break out of the loop to stop watching.
func (c *Client) WatchHandoffs(ctx context.Context, req *batonv1.WatchHandoffsRequest, opts ...grpc.CallOption) iter.Seq2[*batonv1.HandoffEvent, error] {
	return func(yield func(*batonv1.HandoffEvent, error) bool) {
		r := proto.Clone(req).(*batonv1.WatchHandoffsRequest)
		open := func(ctx context.Context) (grpc.ServerStreamingClient[batonv1.HandoffEvent], error) {
			return c.handoffs.WatchHandoffs(ctx, r, opts...)
		}
		accept := func(ev *batonv1.HandoffEvent) (deliver, done bool) {
			if r.AfterCursor != nil && ev.GetCursor() <= r.GetAfterCursor() {
				return false, false
			}
			cursor := ev.GetCursor()
			r.AfterCursor = &cursor
			return true, false
		}
		resume(ctx, c, batonv1.HandoffService_WatchHandoffs_FullMethodName, open, accept, nil, yield)
	}
}

// StreamHandoffContext streams a handoff's context package as an iterator: the summary entry
// first, then the session's entries up to the handoff's up_to_seq that fit its token budget,
// in sequence order. The package has no cursor, so the stream is retried only while nothing
// has been delivered; a later break is yielded as the error.
func (c *Client) StreamHandoffContext(ctx context.Context, req *batonv1.StreamHandoffContextRequest, opts ...grpc.CallOption) iter.Seq2[*batonv1.Entry, error] {
	return func(yield func(*batonv1.Entry, error) bool) {
		started := false
		open := func(ctx context.Context) (grpc.ServerStreamingClient[batonv1.Entry], error) {
			return c.handoffs.StreamHandoffContext(ctx, req, opts...)
		}
		accept := func(*batonv1.Entry) (deliver, done bool) {
			started = true
			return true, false
		}
		canResume := func() bool { return !started }
		resume(ctx, c, batonv1.HandoffService_StreamHandoffContext_FullMethodName, open, accept, canResume, yield)
	}
}

// resume runs a server stream, reopening it after a retryable break while the retry policy
// allows (attempts are counted since the last delivered item) and canResume (nil: always)
// agrees. accept filters the items and records the position to resume from; it reports
// whether to deliver an item and whether the stream is complete after it.
func resume[T any](
	ctx context.Context,
	c *Client,
	method string,
	open func(context.Context) (grpc.ServerStreamingClient[T], error),
	accept func(*T) (deliver, done bool),
	canResume func() bool,
	yield func(*T, error) bool,
) {
	attempt := 1
	for {
		err := func() error {
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := open(sctx)
			if err != nil {
				return err
			}
			for {
				m, err := stream.Recv()
				if err != nil {
					return err
				}
				attempt = 1
				deliver, done := accept(m)
				if deliver && !yield(m, nil) {
					return errStop
				}
				if done {
					return io.EOF
				}
			}
		}()
		if err == io.EOF || err == errStop {
			return
		}
		if ctx.Err() != nil || attempt >= c.opts.retry.MaxAttempts || (canResume != nil && !canResume()) {
			yield(nil, asError(err))
			return
		}
		ok, serverDelay := retryable(method, err)
		attempt++
		if !ok || !sleep(ctx, c.opts.retry.backoff(attempt, serverDelay)) {
			yield(nil, asError(err))
			return
		}
	}
}

// errStop ends resume when the caller stopped iterating.
var errStop = errors.New("baton: iteration stopped")
