package baton_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	baton "github.com/baton-dev/baton/clients/go"
	"github.com/baton-dev/baton/clients/go/batonv1"
)

// collector runs a stream's loop in the background, so a test can act between items.
type collector[T any] struct {
	ctx   context.Context
	stop  context.CancelFunc
	items chan T
	errc  chan error
	done  chan struct{}
}

// collect iterates the stream that mk opens on a context collect cancels in close.
func collect[T any](ctx context.Context, mk func(context.Context) iter.Seq2[T, error]) *collector[T] {
	sctx, stop := context.WithCancel(ctx)
	c := &collector[T]{ctx: ctx, stop: stop, items: make(chan T, 1024), errc: make(chan error, 1), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for item, err := range mk(sctx) {
			if err != nil {
				c.errc <- err
				return
			}
			select {
			case c.items <- item:
			case <-sctx.Done():
				return
			}
		}
	}()
	return c
}

// next returns the next item; the stream ending or the test's time running out fails the test.
func (c *collector[T]) next(t testing.TB) T {
	t.Helper()
	select {
	case item := <-c.items:
		return item
	case err := <-c.errc:
		t.Fatalf("the stream ended: %v", err)
	case <-c.ctx.Done():
		t.Fatal("timed out waiting for the stream")
	}
	panic("unreachable")
}

// close stops the stream and returns what it delivered that next did not take.
func (c *collector[T]) close() []T {
	c.stop()
	<-c.done
	var rest []T
	for len(c.items) > 0 {
		rest = append(rest, <-c.items)
	}
	return rest
}

// patient retries long enough (about a minute) for a debug batond to restart on a busy machine.
var patient = baton.WithRetryPolicy(baton.RetryPolicy{MaxAttempts: 40, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second, Multiplier: 2})

func countEntries(t *testing.T, c *baton.Client, key string) []*batonv1.Entry {
	t.Helper()
	r, err := c.ListEntries(testCtx(t, 30*time.Second), &batonv1.ListEntriesRequest{SessionKey: key, PageSize: 1000})
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}
	return r.GetEntries()
}

func TestAppendRetriedAfterLostAnswerIsStoredOnce(t *testing.T) {
	srv := sharedServer(t)
	direct := dial(t, srv.target())
	ctx := testCtx(t, 60*time.Second)
	p := newProxy(t, srv.target())

	// Control: the raw stub through the same proxy fails, and the server did store the
	// append, so the answer, not the request, was lost.
	rawKey := uniq("raw")
	if _, err := direct.CreateSession(ctx, &batonv1.CreateSessionRequest{SessionKey: rawKey, Agent: "planner"}); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(p.target(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rawMarker := uniq("lost-answer-raw")
	p.arm(rawMarker, false)
	_, err = batonv1.NewContextServiceClient(conn).AppendEntries(ctx, &batonv1.AppendEntriesRequest{SessionKey: rawKey, IdempotencyKey: "k1",
		Entries: []*batonv1.NewEntry{msg("planner", rawMarker)}})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("raw stub through the dropping proxy: want UNAVAILABLE, got %v", err)
	}
	if _, dropped, seen := p.stats(); dropped != 1 || !seen {
		t.Fatalf("proxy did not drop the answer (dropped %d, answer seen %v)", dropped, seen)
	}
	if n := len(countEntries(t, direct, rawKey)); n != 1 {
		t.Fatalf("the raw append was stored %d times before its answer was lost, want 1", n)
	}

	// The client: the same loss is retried with the same key and stored once.
	key := uniq("retry")
	if _, err := direct.CreateSession(ctx, &batonv1.CreateSessionRequest{SessionKey: key, Agent: "planner"}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.target(), baton.WithRetryPolicy(baton.RetryPolicy{MaxAttempts: 5, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Multiplier: 2}))
	connsBefore, _, _ := p.stats()
	marker := uniq("lost-answer")
	p.arm(marker, false)
	resp, err := c.AppendEntries(ctx, &batonv1.AppendEntriesRequest{SessionKey: key, Entries: []*batonv1.NewEntry{msg("planner", marker), msg("planner", "second")}})
	if err != nil {
		t.Fatalf("AppendEntries through a lost answer: %v", err)
	}
	conns, dropped, _ := p.stats()
	if dropped != 2 || conns <= connsBefore {
		t.Fatalf("the answer was not lost (dropped %d, connections %d -> %d)", dropped, connsBefore, conns)
	}
	stored := countEntries(t, direct, key)
	if !slices.Equal(seqs(stored), []uint64{1, 2}) || resp.GetFirstSeq() != 1 || resp.GetLastSeq() != 2 {
		t.Fatalf("stored %v, answered %d..%d: want the two entries once", seqs(stored), resp.GetFirstSeq(), resp.GetLastSeq())
	}
	if stored[0].GetText() != marker || stored[0].GetIdempotencyKey() == "" {
		t.Fatalf("stored %v", stored[0])
	}
}

// Creates and transitions whose answer was lost are retried with the same idempotency key (or,
// for a transition, found already made) and happen once.
func TestCreatesRetriedAfterLostAnswersHappenOnce(t *testing.T) {
	srv := sharedServer(t)
	ctx := testCtx(t, 60*time.Second)
	tenant := baton.WithTenant(uniq("t"))
	direct := dial(t, srv.target(), tenant)
	p := newProxy(t, srv.target())
	c := dial(t, p.target(), tenant, baton.WithRetryPolicy(baton.RetryPolicy{MaxAttempts: 5, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Multiplier: 2}))
	// lose arms the proxy on marker (a string the request carries), runs call, and checks that
	// its answer was lost once and the call still succeeded.
	lose := func(marker string, call func() error) {
		t.Helper()
		_, before, _ := p.stats()
		p.arm(marker, false)
		if err := call(); err != nil {
			t.Fatalf("%s through a lost answer: %v", marker, err)
		}
		if _, dropped, _ := p.stats(); dropped != before+1 {
			t.Fatalf("%s: the proxy did not drop the answer", marker)
		}
	}

	writer, reader := uniq("writer"), uniq("reader")
	var s, fork *batonv1.Session
	var h *batonv1.Handoff
	lose(writer, func() (err error) {
		s, err = c.CreateSession(ctx, &batonv1.CreateSessionRequest{Agent: writer})
		return err
	})
	if _, err := direct.AppendEntries(ctx, &batonv1.AppendEntriesRequest{SessionKey: s.GetSessionKey(), Entries: []*batonv1.NewEntry{msg(writer, "one")}}); err != nil {
		t.Fatal(err)
	}
	lose(reader, func() (err error) {
		fork, err = c.ForkSession(ctx, &batonv1.ForkSessionRequest{SessionKey: s.GetSessionKey(), Agent: reader})
		return err
	})
	instructions := uniq("instructions")
	lose(instructions, func() (err error) {
		h, err = c.RequestHandoff(ctx, &batonv1.RequestHandoffRequest{SessionKey: s.GetSessionKey(), FromAgent: writer, ToAgent: reader,
			Type: batonv1.HandoffType_HANDOFF_TYPE_CONTEXT_TRANSFER, Instructions: instructions})
		return err
	})
	lose(h.GetHandoffId(), func() error {
		a, err := c.AcceptHandoff(ctx, &batonv1.AcceptHandoffRequest{HandoffId: h.GetHandoffId(), Agent: reader})
		if err == nil && a.GetStatus() != batonv1.HandoffStatus_HANDOFF_STATUS_ACCEPTED {
			err = fmt.Errorf("status %v", a.GetStatus())
		}
		return err
	})

	sessions, err := direct.ListSessions(ctx, &batonv1.ListSessionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, x := range sessions.GetSessions() {
		keys = append(keys, x.GetSessionKey())
	}
	want := []string{s.GetSessionKey(), fork.GetSessionKey()}
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Fatalf("sessions %v, want one session and one fork %v", keys, want)
	}
	handoffs, err := direct.ListHandoffs(ctx, &batonv1.ListHandoffsRequest{SessionKey: s.GetSessionKey()})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(handoffs.GetHandoffs()); n != 1 {
		t.Fatalf("%d handoffs, want 1", n)
	}
}

func TestFollowStreamSurvivesServerRestart(t *testing.T) {
	srv := ownServer(t)
	writer := dial(t, srv.target(), patient)
	follower := dial(t, srv.target(), patient)
	ctx := testCtx(t, 120*time.Second)
	key := uniq("follow")
	const n = 30
	if _, err := writer.CreateSession(ctx, &batonv1.CreateSessionRequest{SessionKey: key, Agent: "planner"}); err != nil {
		t.Fatal(err)
	}
	appendRange := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			if _, err := writer.AppendEntries(ctx, &batonv1.AppendEntriesRequest{SessionKey: key, Entries: []*batonv1.NewEntry{msg("planner", fmt.Sprintf("entry %d", i))}}); err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
		}
	}
	appendRange(1, 10)

	stream := collect(ctx, func(ctx context.Context) iter.Seq2[*batonv1.Entry, error] {
		return follower.StreamEntries(ctx, &batonv1.StreamEntriesRequest{SessionKey: key, Follow: true})
	})
	var delivered []uint64
	await := func(last uint64) {
		t.Helper()
		for len(delivered) == 0 || delivered[len(delivered)-1] < last {
			delivered = append(delivered, stream.next(t).GetSeq())
		}
	}
	await(10)

	srv.stop() // SIGTERM: the stream ends with UNAVAILABLE
	time.Sleep(500 * time.Millisecond)
	if err := srv.start(); err != nil {
		t.Fatal(err)
	}
	appendRange(11, 20)
	await(20)

	srv.kill() // a crash: the connection just breaks
	if err := srv.start(); err != nil {
		t.Fatal(err)
	}
	appendRange(21, n)
	await(n)

	for _, e := range stream.close() {
		delivered = append(delivered, e.GetSeq())
	}
	want := make([]uint64, n)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if !slices.Equal(delivered, want) {
		t.Fatalf("delivered %v, want 1..%d exactly once", delivered, n)
	}
}

func TestWatchHandoffsResumesByCursor(t *testing.T) {
	srv := ownServer(t)
	c := dial(t, srv.target(), patient)
	ctx := testCtx(t, 120*time.Second)
	key, from, to := uniq("watch"), "planner", "coder"
	if _, err := c.CreateSession(ctx, &batonv1.CreateSessionRequest{SessionKey: key, Agent: from}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AppendEntries(ctx, &batonv1.AppendEntriesRequest{SessionKey: key, Entries: []*batonv1.NewEntry{msg(from, "context")}}); err != nil {
		t.Fatal(err)
	}
	request := func() string {
		t.Helper()
		h, err := c.RequestHandoff(ctx, &batonv1.RequestHandoffRequest{SessionKey: key, FromAgent: from, ToAgent: to, Type: batonv1.HandoffType_HANDOFF_TYPE_COLLABORATION})
		if err != nil {
			t.Fatal(err)
		}
		return h.GetHandoffId()
	}
	h1, h2 := request(), request()

	inbox := collect(ctx, func(ctx context.Context) iter.Seq2[*batonv1.HandoffEvent, error] {
		return c.WatchHandoffs(ctx, &batonv1.WatchHandoffsRequest{Agent: to})
	})
	type ev struct {
		id  string
		typ batonv1.HandoffEventType
	}
	var got []ev
	var cursors []uint64
	add := func(e *batonv1.HandoffEvent) {
		got = append(got, ev{e.GetHandoff().GetHandoffId(), e.GetType()})
		cursors = append(cursors, e.GetCursor())
	}
	await := func(count int) {
		t.Helper()
		for len(got) < count {
			add(inbox.next(t))
		}
	}
	await(2) // the two pending handoffs

	srv.stop()
	if err := srv.start(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AcceptHandoff(ctx, &batonv1.AcceptHandoffRequest{HandoffId: h1, Agent: to}); err != nil {
		t.Fatal(err)
	}
	h3 := request()
	await(4)

	srv.kill()
	if err := srv.start(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RejectHandoff(ctx, &batonv1.RejectHandoffRequest{HandoffId: h2, Agent: to}); err != nil {
		t.Fatal(err)
	}
	await(5)
	// Nothing more may come: a duplicate would show up here.
	time.Sleep(300 * time.Millisecond)
	for _, e := range inbox.close() {
		add(e)
	}
	want := []ev{
		{h1, batonv1.HandoffEventType_HANDOFF_EVENT_TYPE_CREATED},
		{h2, batonv1.HandoffEventType_HANDOFF_EVENT_TYPE_CREATED},
		{h1, batonv1.HandoffEventType_HANDOFF_EVENT_TYPE_ACCEPTED},
		{h3, batonv1.HandoffEventType_HANDOFF_EVENT_TYPE_CREATED},
		{h2, batonv1.HandoffEventType_HANDOFF_EVENT_TYPE_REJECTED},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("WatchHandoffs delivered %v, want %v", got, want)
	}
	if !slices.IsSorted(cursors) || len(slices.Compact(slices.Clone(cursors))) != len(cursors) {
		t.Fatalf("cursors not strictly increasing: %v", cursors)
	}
}

func TestDefaultDeadline(t *testing.T) {
	srv := sharedServer(t)
	p := newProxy(t, srv.target())
	c := dial(t, p.target(), baton.WithTimeout(300*time.Millisecond))
	key := uniq("stalled")
	p.arm(key, true) // the server's answer never comes back
	start := time.Now()
	_, err := c.GetSession(context.Background(), &batonv1.GetSessionRequest{SessionKey: key})
	elapsed := time.Since(start)
	mustError(t, err, "DEADLINE_EXCEEDED")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("errors.Is(err, context.DeadlineExceeded) is false for %v", err)
	}
	if elapsed < 250*time.Millisecond || elapsed > 5*time.Second {
		t.Fatalf("the call took %v with a 300ms default deadline", elapsed)
	}
	if _, dropped, _ := p.stats(); dropped != 1 {
		t.Fatal("the proxy never saw the request")
	}
}

func TestContextDeadlineEndsFollowStream(t *testing.T) {
	srv := sharedServer(t)
	c := dial(t, srv.target())
	ctx := testCtx(t, 30*time.Second)
	key := uniq("deadline")
	if _, err := c.CreateSession(ctx, &batonv1.CreateSessionRequest{SessionKey: key, Agent: "planner"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AppendEntries(ctx, &batonv1.AppendEntriesRequest{SessionKey: key, Entries: []*batonv1.NewEntry{msg("planner", "one")}}); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	var n int
	var last error
	for e, err := range c.StreamEntries(sctx, &batonv1.StreamEntriesRequest{SessionKey: key, Follow: true}) {
		if err != nil {
			last = err
			continue
		}
		if e.GetSeq() != 1 {
			t.Fatalf("unexpected entry %v", e)
		}
		n++
	}
	mustError(t, last, "DEADLINE_EXCEEDED")
	if n != 1 || time.Since(start) > 10*time.Second {
		t.Fatalf("%d entries, stream ended after %v", n, time.Since(start))
	}

	// An explicit deadline on a unary call wins over the default one.
	dctx, dcancel := context.WithTimeout(ctx, time.Nanosecond)
	defer dcancel()
	time.Sleep(time.Millisecond)
	_, err := c.GetSession(dctx, &batonv1.GetSessionRequest{SessionKey: key})
	mustError(t, err, "DEADLINE_EXCEEDED")
}
