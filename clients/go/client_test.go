package baton_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	baton "github.com/baton-dev/baton/clients/go"
	"github.com/baton-dev/baton/clients/go/batonv1"
)

func dial(t testing.TB, target string, opts ...baton.Option) *baton.Client {
	t.Helper()
	c, err := baton.Dial(testCtx(t, 30*time.Second), target, opts...)
	if err != nil {
		t.Fatalf("Dial(%s): %v", target, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// uniq returns a key no other test run uses.
func uniq(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

func msg(author, text string) *batonv1.NewEntry {
	return &batonv1.NewEntry{Kind: batonv1.EntryKind_ENTRY_KIND_MESSAGE, Role: "assistant", Author: author, Content: &batonv1.NewEntry_Text{Text: text}}
}

func mustError(t testing.TB, err error, code string) *baton.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %s error, got none", code)
	}
	var be *baton.Error
	if !errors.As(err, &be) {
		t.Fatalf("want *baton.Error, got %T: %v", err, err)
	}
	if be.Code != code {
		t.Fatalf("want code %s, got %s (%v)", code, be.Code, err)
	}
	return be
}

func seqs(entries []*batonv1.Entry) []uint64 {
	out := make([]uint64, len(entries))
	for i, e := range entries {
		out[i] = e.GetSeq()
	}
	return out
}

func TestContextServiceEveryRPC(t *testing.T) {
	srv := sharedServer(t)
	c := dial(t, srv.target())
	ctx := testCtx(t, 60*time.Second)
	key := uniq("ctx")

	meta, _ := structpb.NewStruct(map[string]any{"team": "infra"})
	s, err := c.CreateSession(ctx, &batonv1.CreateSessionRequest{SessionKey: key, Agent: "planner", Metadata: meta, Ttl: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	if s.GetSessionKey() != key || s.GetOwner() != "planner" || s.GetStatus() != batonv1.SessionStatus_SESSION_STATUS_ACTIVE || s.GetExpiresAt() == nil {
		t.Fatalf("CreateSession returned %v", s)
	}

	if got, err := c.GetSession(ctx, &batonv1.GetSessionRequest{SessionKey: key}); err != nil || got.GetMetadata().GetFields()["team"].GetStringValue() != "infra" {
		t.Fatalf("GetSession: %v, %v", got, err)
	}

	list, err := c.ListSessions(ctx, &batonv1.ListSessionsRequest{Agent: "planner", PageSize: 1000})
	if err != nil {
		t.Fatalf("ListSessions: %v", err)
	}
	if !slices.ContainsFunc(list.GetSessions(), func(s *batonv1.Session) bool { return s.GetSessionKey() == key }) {
		t.Fatalf("ListSessions does not list %s", key)
	}

	meta2, _ := structpb.NewStruct(map[string]any{"phase": "two"})
	if up, err := c.UpdateSession(ctx, &batonv1.UpdateSessionRequest{SessionKey: key, Metadata: meta2}); err != nil || up.GetMetadata().GetFields()["phase"].GetStringValue() != "two" {
		t.Fatalf("UpdateSession: %v, %v", up, err)
	}

	req := &batonv1.AppendEntriesRequest{SessionKey: key, Entries: []*batonv1.NewEntry{
		msg("planner", "Plan: migrate the schema"),
		msg("planner", "Step one: add the column"),
		msg("planner", "Step two: backfill"),
	}}
	app, err := c.AppendEntries(ctx, req)
	if err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	if app.GetFirstSeq() != 1 || app.GetLastSeq() != 3 || len(app.GetEntries()) != 3 {
		t.Fatalf("AppendEntries returned %v", app)
	}
	ikey := app.GetEntries()[0].GetIdempotencyKey()
	if !strings.HasPrefix(ikey, "go-") || app.GetEntries()[2].GetIdempotencyKey() != ikey {
		t.Fatalf("append without a key was not given one: %q", ikey)
	}
	if req.GetIdempotencyKey() != "" {
		t.Fatalf("AppendEntries changed the caller's request: %q", req.GetIdempotencyKey())
	}
	// An explicit key is kept, and repeating it writes nothing.
	again := &batonv1.AppendEntriesRequest{SessionKey: key, IdempotencyKey: "mine-1", Entries: []*batonv1.NewEntry{msg("planner", "Step three: verify")}}
	for i := 0; i < 2; i++ {
		r, err := c.AppendEntries(ctx, again)
		if err != nil || r.GetFirstSeq() != 4 || r.GetEntries()[0].GetIdempotencyKey() != "mine-1" {
			t.Fatalf("AppendEntries with a key, try %d: %v, %v", i+1, r, err)
		}
	}

	le, err := c.ListEntries(ctx, &batonv1.ListEntriesRequest{SessionKey: key, AfterSeq: ptr(uint64(1))})
	if err != nil || !slices.Equal(seqs(le.GetEntries()), []uint64{2, 3, 4}) {
		t.Fatalf("ListEntries: %v, %v", le, err)
	}

	var streamed []*batonv1.Entry
	for e, err := range c.StreamEntries(ctx, &batonv1.StreamEntriesRequest{SessionKey: key, AfterSeq: 1}) {
		if err != nil {
			t.Fatalf("StreamEntries: %v", err)
		}
		streamed = append(streamed, e)
	}
	if !slices.Equal(seqs(streamed), []uint64{2, 3, 4}) {
		t.Fatalf("StreamEntries delivered %v", seqs(streamed))
	}
	streamed = nil
	for e, err := range c.StreamEntries(ctx, &batonv1.StreamEntriesRequest{SessionKey: key, MaxEntries: 2}) {
		if err != nil {
			t.Fatalf("StreamEntries max_entries: %v", err)
		}
		streamed = append(streamed, e)
	}
	if !slices.Equal(seqs(streamed), []uint64{1, 2}) {
		t.Fatalf("StreamEntries with max_entries 2 delivered %v", seqs(streamed))
	}

	win, err := c.GetContextWindow(ctx, &batonv1.GetContextWindowRequest{SessionKey: key, MaxTokens: 4000})
	if err != nil || win.GetLastSeq() != 4 || !slices.Equal(seqs(win.GetEntries()), []uint64{1, 2, 3, 4}) {
		t.Fatalf("GetContextWindow: %v, %v", win, err)
	}

	hits, err := c.SearchEntries(ctx, &batonv1.SearchEntriesRequest{SessionKey: key, Query: "backfill"})
	if err != nil || len(hits.GetHits()) != 1 || hits.GetHits()[0].GetEntry().GetSeq() != 3 {
		t.Fatalf("SearchEntries: %v, %v", hits, err)
	}

	closed, err := c.CloseSession(ctx, &batonv1.CloseSessionRequest{SessionKey: key})
	if err != nil || closed.GetStatus() != batonv1.SessionStatus_SESSION_STATUS_CLOSED {
		t.Fatalf("CloseSession: %v, %v", closed, err)
	}
	_, err = c.AppendEntries(ctx, &batonv1.AppendEntriesRequest{SessionKey: key, Entries: []*batonv1.NewEntry{msg("planner", "late")}})
	mustError(t, err, "FAILED_PRECONDITION")
}

func ptr[T any](v T) *T { return &v }

func TestHandoffServiceEveryRPC(t *testing.T) {
	srv := sharedServer(t)
	c := dial(t, srv.target())
	ctx := testCtx(t, 60*time.Second)
	key, from, to := uniq("hand"), uniq("planner"), uniq("coder")

	if _, err := c.CreateSession(ctx, &batonv1.CreateSessionRequest{SessionKey: key, Agent: from}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AppendEntries(ctx, &batonv1.AppendEntriesRequest{SessionKey: key, Entries: []*batonv1.NewEntry{
		msg(from, "We migrate the orders table to the new schema."),
		msg(from, "The backfill job is written but not run."),
	}}); err != nil {
		t.Fatal(err)
	}
	request := func(instructions string) *batonv1.Handoff {
		t.Helper()
		h, err := c.RequestHandoff(ctx, &batonv1.RequestHandoffRequest{SessionKey: key, FromAgent: from, ToAgent: to,
			Type: batonv1.HandoffType_HANDOFF_TYPE_CONTEXT_TRANSFER, Instructions: instructions})
		if err != nil {
			t.Fatalf("RequestHandoff: %v", err)
		}
		if h.GetStatus() != batonv1.HandoffStatus_HANDOFF_STATUS_PENDING || h.GetUpToSeq() != 2 {
			t.Fatalf("RequestHandoff returned %v", h)
		}
		return h
	}

	h1 := request("Run the backfill")
	if got, err := c.GetHandoff(ctx, &batonv1.GetHandoffRequest{HandoffId: h1.GetHandoffId()}); err != nil || got.GetInstructions() != "Run the backfill" {
		t.Fatalf("GetHandoff: %v, %v", got, err)
	}
	lh, err := c.ListHandoffs(ctx, &batonv1.ListHandoffsRequest{ToAgent: to, SessionKey: key})
	if err != nil || len(lh.GetHandoffs()) != 1 || lh.GetHandoffs()[0].GetHandoffId() != h1.GetHandoffId() {
		t.Fatalf("ListHandoffs: %v, %v", lh, err)
	}

	var pkg []*batonv1.Entry
	for e, err := range c.StreamHandoffContext(ctx, &batonv1.StreamHandoffContextRequest{HandoffId: h1.GetHandoffId()}) {
		if err != nil {
			t.Fatalf("StreamHandoffContext: %v", err)
		}
		pkg = append(pkg, e)
	}
	var texts []string
	for _, e := range pkg {
		if e.GetKind() != batonv1.EntryKind_ENTRY_KIND_SUMMARY {
			texts = append(texts, e.GetText())
		}
	}
	if len(texts) != 2 || !strings.Contains(texts[1], "backfill job") {
		t.Fatalf("context package: %v", pkg)
	}

	if a, err := c.AcceptHandoff(ctx, &batonv1.AcceptHandoffRequest{HandoffId: h1.GetHandoffId(), Agent: to}); err != nil || a.GetStatus() != batonv1.HandoffStatus_HANDOFF_STATUS_ACCEPTED {
		t.Fatalf("AcceptHandoff: %v, %v", a, err)
	}
	if d, err := c.CompleteHandoff(ctx, &batonv1.CompleteHandoffRequest{HandoffId: h1.GetHandoffId(), Agent: to}); err != nil || d.GetStatus() != batonv1.HandoffStatus_HANDOFF_STATUS_COMPLETED {
		t.Fatalf("CompleteHandoff: %v, %v", d, err)
	}
	h2 := request("Review the plan")
	if r, err := c.RejectHandoff(ctx, &batonv1.RejectHandoffRequest{HandoffId: h2.GetHandoffId(), Agent: to, Reason: "busy"}); err != nil || r.GetStatus() != batonv1.HandoffStatus_HANDOFF_STATUS_REJECTED || r.GetReason() != "busy" {
		t.Fatalf("RejectHandoff: %v, %v", r, err)
	}
	h3 := request("Never mind")
	if x, err := c.CancelHandoff(ctx, &batonv1.CancelHandoffRequest{HandoffId: h3.GetHandoffId(), Agent: from, Reason: "done myself"}); err != nil || x.GetStatus() != batonv1.HandoffStatus_HANDOFF_STATUS_CANCELLED {
		t.Fatalf("CancelHandoff: %v, %v", x, err)
	}
	// Accepting a cancelled handoff is an illegal transition.
	_, err = c.AcceptHandoff(ctx, &batonv1.AcceptHandoffRequest{HandoffId: h3.GetHandoffId(), Agent: to})
	mustError(t, err, "FAILED_PRECONDITION")

	// The target's inbox from its beginning: every event of the three handoffs, in order.
	type ev struct {
		id  string
		typ batonv1.HandoffEventType
	}
	want := []ev{
		{h1.GetHandoffId(), batonv1.HandoffEventType_HANDOFF_EVENT_TYPE_CREATED},
		{h1.GetHandoffId(), batonv1.HandoffEventType_HANDOFF_EVENT_TYPE_ACCEPTED},
		{h1.GetHandoffId(), batonv1.HandoffEventType_HANDOFF_EVENT_TYPE_COMPLETED},
		{h2.GetHandoffId(), batonv1.HandoffEventType_HANDOFF_EVENT_TYPE_CREATED},
		{h2.GetHandoffId(), batonv1.HandoffEventType_HANDOFF_EVENT_TYPE_REJECTED},
		{h3.GetHandoffId(), batonv1.HandoffEventType_HANDOFF_EVENT_TYPE_CREATED},
		{h3.GetHandoffId(), batonv1.HandoffEventType_HANDOFF_EVENT_TYPE_CANCELLED},
	}
	var got []ev
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for e, err := range c.WatchHandoffs(wctx, &batonv1.WatchHandoffsRequest{Agent: to, AfterCursor: ptr(uint64(0))}) {
		if err != nil {
			t.Fatalf("WatchHandoffs after %v: %v", got, err)
		}
		got = append(got, ev{e.GetHandoff().GetHandoffId(), e.GetType()})
		if len(got) == len(want) {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("WatchHandoffs delivered %v, want %v", got, want)
	}
}

func TestNotFoundIsBatonError(t *testing.T) {
	srv := sharedServer(t)
	c := dial(t, srv.target())
	ctx := testCtx(t, 30*time.Second)

	_, err := c.GetSession(ctx, &batonv1.GetSessionRequest{SessionKey: uniq("missing")})
	be := mustError(t, err, "NOT_FOUND")
	if be.Message == "" || be.GRPCCode() != codes.NotFound || status.Code(err) != codes.NotFound {
		t.Fatalf("NOT_FOUND error: %#v", be)
	}
	_, err = c.GetHandoff(ctx, &batonv1.GetHandoffRequest{HandoffId: uniq("nohandoff")})
	mustError(t, err, "NOT_FOUND")

	// A stream reports it the same way, once, without resuming.
	n := 0
	for _, err := range c.StreamEntries(ctx, &batonv1.StreamEntriesRequest{SessionKey: uniq("missing"), Follow: true}) {
		n++
		mustError(t, err, "NOT_FOUND")
	}
	if n != 1 {
		t.Fatalf("the stream yielded %d times, want one error", n)
	}
}

func TestInvalidArgumentCarriesFieldViolations(t *testing.T) {
	srv := sharedServer(t)
	c := dial(t, srv.target())
	ctx := testCtx(t, 30*time.Second)

	_, err := c.AppendEntries(ctx, &batonv1.AppendEntriesRequest{Entries: []*batonv1.NewEntry{
		{Kind: batonv1.EntryKind_ENTRY_KIND_UNSPECIFIED, Author: "a", Content: &batonv1.NewEntry_Text{Text: "x"}},
		{Kind: batonv1.EntryKind_ENTRY_KIND_MESSAGE, Content: &batonv1.NewEntry_Text{Text: "y"}},
	}})
	be := mustError(t, err, "INVALID_ARGUMENT")
	var fields []string
	for _, v := range be.FieldViolations {
		if v.Description == "" {
			t.Fatalf("violation of %s has no description", v.Field)
		}
		fields = append(fields, v.Field)
	}
	for _, f := range []string{"session_key", "entries[0].kind", "entries[1].author"} {
		if !slices.Contains(fields, f) {
			t.Fatalf("field violations %v lack %s", fields, f)
		}
	}
	if !strings.Contains(be.Error(), "entries[1].author") {
		t.Fatalf("Error() does not name the fields: %s", be.Error())
	}

	_, err = c.CreateSession(ctx, &batonv1.CreateSessionRequest{SessionKey: "not a valid key!"})
	be = mustError(t, err, "INVALID_ARGUMENT")
	if len(be.FieldViolations) < 2 {
		t.Fatalf("want violations of session_key and agent, got %v", be.FieldViolations)
	}
}

func TestTenantHeaderSeparatesTenants(t *testing.T) {
	srv := sharedServer(t)
	ta, tb := uniq("tenant-a"), uniq("tenant-b")
	a := dial(t, srv.target(), baton.WithTenant(ta))
	b := dial(t, "http://"+srv.target(), baton.WithTenant(tb))
	ctx := testCtx(t, 30*time.Second)
	key := uniq("t")
	s, err := a.CreateSession(ctx, &batonv1.CreateSessionRequest{SessionKey: key, Agent: "planner"})
	if err != nil || s.GetTenant() != ta {
		t.Fatalf("CreateSession in tenant %s: %v, %v", ta, s, err)
	}
	_, err = b.GetSession(ctx, &batonv1.GetSessionRequest{SessionKey: key})
	mustError(t, err, "NOT_FOUND")
}

func TestDialFailsWhenNothingListens(t *testing.T) {
	port := freePort(t)
	_, err := baton.Dial(testCtx(t, 30*time.Second), fmt.Sprintf("127.0.0.1:%d", port))
	mustError(t, err, "UNAVAILABLE")
}
