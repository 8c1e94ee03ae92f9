package baton_test

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	baton "github.com/baton-dev/baton/clients/go"
	"github.com/baton-dev/baton/clients/go/batonv1"
)

// A new RPC in proto/ must get a method on the Client (this fails until it does).
func TestEveryRPCHasAMethod(t *testing.T) {
	client := reflect.TypeOf(&baton.Client{})
	n := 0
	for _, desc := range []struct {
		name    string
		methods []string
	}{
		{batonv1.ContextService_ServiceDesc.ServiceName, rpcNames(batonv1.ContextService_ServiceDesc.Methods, batonv1.ContextService_ServiceDesc.Streams)},
		{batonv1.HandoffService_ServiceDesc.ServiceName, rpcNames(batonv1.HandoffService_ServiceDesc.Methods, batonv1.HandoffService_ServiceDesc.Streams)},
	} {
		for _, name := range desc.methods {
			n++
			if _, ok := client.MethodByName(name); !ok {
				t.Errorf("baton.Client has no method %s for %s/%s", name, desc.name, name)
			}
		}
	}
	if n != 23 {
		t.Fatalf("the services have %d RPCs; this test knows 23", n)
	}
}

func rpcNames(methods []grpc.MethodDesc, streams []grpc.StreamDesc) []string {
	var out []string
	for _, m := range methods {
		out = append(out, m.MethodName)
	}
	for _, s := range streams {
		out = append(out, s.StreamName)
	}
	return out
}

// seeded opens a session owned by agent with the entries "entry 1" .. "entry n".
func seeded(t *testing.T, c *baton.Client, agent string, n int) string {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	key := uniq("life")
	if _, err := c.CreateSession(ctx, &batonv1.CreateSessionRequest{SessionKey: key, Agent: agent}); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	entries := make([]*batonv1.NewEntry, n)
	for i := range entries {
		entries[i] = msg(agent, fmt.Sprintf("entry %d", i+1))
	}
	if _, err := c.AppendEntries(ctx, &batonv1.AppendEntriesRequest{SessionKey: key, Entries: entries}); err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	return key
}

func TestDeleteSession(t *testing.T) {
	c := dial(t, sharedServer(t).target(), baton.WithTenant("go-life"))
	ctx := testCtx(t, 30*time.Second)
	key := seeded(t, c, "planner", 3)

	gone, err := c.DeleteSession(ctx, &batonv1.DeleteSessionRequest{SessionKey: key})
	if err != nil || gone.GetDeletedEntries() != 3 {
		t.Fatalf("DeleteSession: %v, %v", gone, err)
	}
	_, err = c.GetSession(ctx, &batonv1.GetSessionRequest{SessionKey: key})
	mustError(t, err, "NOT_FOUND")
	_, err = c.ListEntries(ctx, &batonv1.ListEntriesRequest{SessionKey: key})
	mustError(t, err, "NOT_FOUND")
	_, err = c.DeleteSession(ctx, &batonv1.DeleteSessionRequest{SessionKey: key})
	mustError(t, err, "NOT_FOUND")
}

func TestForkSession(t *testing.T) {
	c := dial(t, sharedServer(t).target(), baton.WithTenant("go-life"))
	ctx := testCtx(t, 30*time.Second)
	source := seeded(t, c, "planner", 5)
	forkKey := source + "-fork"

	fork, err := c.ForkSession(ctx, &batonv1.ForkSessionRequest{SessionKey: source, AtSeq: 3, NewSessionKey: forkKey, Agent: "explorer"})
	if err != nil {
		t.Fatalf("ForkSession: %v", err)
	}
	if fork.GetSessionKey() != forkKey || fork.GetOwner() != "explorer" || fork.GetLastSeq() != 3 {
		t.Fatalf("ForkSession returned %v", fork)
	}
	if want := (&batonv1.SessionRef{SessionKey: source, Seq: 3}); !proto.Equal(fork.GetForkedFrom(), want) {
		t.Fatalf("forked_from = %v, want %v", fork.GetForkedFrom(), want)
	}
	src, err := c.ListEntries(ctx, &batonv1.ListEntriesRequest{SessionKey: source})
	if err != nil {
		t.Fatal(err)
	}
	copied, err := c.ListEntries(ctx, &batonv1.ListEntriesRequest{SessionKey: forkKey})
	if err != nil {
		t.Fatal(err)
	}
	if got := seqs(copied.GetEntries()); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("the fork holds seqs %v, want 1..3", got)
	}
	for i, e := range copied.GetEntries() {
		if e.GetText() != src.GetEntries()[i].GetText() || e.GetAuthor() != src.GetEntries()[i].GetAuthor() {
			t.Fatalf("fork entry %d = %v, source has %v", e.GetSeq(), e, src.GetEntries()[i])
		}
	}
	app, err := c.AppendEntries(ctx, &batonv1.AppendEntriesRequest{SessionKey: forkKey, Entries: []*batonv1.NewEntry{msg("explorer", "elsewhere")}})
	if err != nil || app.GetFirstSeq() != 4 {
		t.Fatalf("appending to the fork: %v, %v", app, err)
	}
	if s, err := c.GetSession(ctx, &batonv1.GetSessionRequest{SessionKey: source}); err != nil || s.GetLastSeq() != 5 || s.GetForkedFrom() != nil {
		t.Fatalf("the source changed: %v, %v", s, err)
	}

	grand, err := c.ForkSession(ctx, &batonv1.ForkSessionRequest{SessionKey: forkKey, AtSeq: 2, Agent: "planner"})
	if err != nil || grand.GetSessionKey() == "" || grand.GetSessionKey() == forkKey {
		t.Fatalf("fork of the fork: %v, %v", grand, err)
	}
	if grand.GetForkedFrom().GetSessionKey() != forkKey || grand.GetForkedFrom().GetSeq() != 2 {
		t.Fatalf("fork of the fork: forked_from = %v", grand.GetForkedFrom())
	}
	parent, err := c.GetSession(ctx, &batonv1.GetSessionRequest{SessionKey: grand.GetForkedFrom().GetSessionKey()})
	if err != nil || parent.GetForkedFrom().GetSessionKey() != source {
		t.Fatalf("the lineage: %v, %v", parent, err)
	}
}

func TestRedactEntries(t *testing.T) {
	c := dial(t, sharedServer(t).target(), baton.WithTenant("go-life"))
	ctx := testCtx(t, 30*time.Second)
	key := seeded(t, c, "planner", 3)

	r, err := c.RedactEntries(ctx, &batonv1.RedactEntriesRequest{SessionKey: key, Seqs: []uint64{2}, Reason: "leaked a password", Agent: "planner"})
	if err != nil || len(r.GetEntries()) != 1 {
		t.Fatalf("RedactEntries: %v, %v", r, err)
	}
	red := r.GetEntries()[0]
	if red.GetSeq() != 2 || !red.GetRedacted() || red.GetText() != "" || len(red.GetData()) != 0 || red.GetAuthor() != "planner" || red.GetKind() != batonv1.EntryKind_ENTRY_KIND_MESSAGE {
		t.Fatalf("redacted entry = %v", red)
	}
	if red.GetRedaction().GetReason() != "leaked a password" || red.GetRedaction().GetRedactedBy() == "" || red.GetRedaction().GetRedactedAt() == nil {
		t.Fatalf("redaction = %v", red.GetRedaction())
	}
	list, err := c.ListEntries(ctx, &batonv1.ListEntriesRequest{SessionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range list.GetEntries() {
		got = append(got, e.GetText())
		if e.GetRedacted() != (e.GetSeq() == 2) {
			t.Fatalf("entry %d: redacted = %v", e.GetSeq(), e.GetRedacted())
		}
	}
	if !slices.Equal(got, []string{"entry 1", "", "entry 3"}) || !slices.Equal(seqs(list.GetEntries()), []uint64{1, 2, 3}) {
		t.Fatalf("after redaction: %v", list.GetEntries())
	}

	// Retract-last: a stale expected_last_seq changes nothing.
	_, err = c.RedactEntries(ctx, &batonv1.RedactEntriesRequest{SessionKey: key, Seqs: []uint64{3}, Reason: "retract", Agent: "planner", ExpectedLastSeq: proto.Uint64(2)})
	mustError(t, err, "FAILED_PRECONDITION")
	after, err := c.ListEntries(ctx, &batonv1.ListEntriesRequest{SessionKey: key, AfterSeq: proto.Uint64(2)})
	if err != nil || after.GetEntries()[0].GetRedacted() || after.GetEntries()[0].GetText() != "entry 3" {
		t.Fatalf("the failed retraction changed entry 3: %v, %v", after, err)
	}
	r, err = c.RedactEntries(ctx, &batonv1.RedactEntriesRequest{SessionKey: key, Seqs: []uint64{3}, Reason: "retract", Agent: "planner", ExpectedLastSeq: proto.Uint64(3)})
	if err != nil || !r.GetEntries()[0].GetRedacted() {
		t.Fatalf("retracting the last entry: %v, %v", r, err)
	}
}

func TestCompactSession(t *testing.T) {
	c := dial(t, sharedServer(t).target(), baton.WithTenant("go-life"))
	ctx := testCtx(t, 30*time.Second)
	key := seeded(t, c, "planner", 5)

	if s, err := c.GetSession(ctx, &batonv1.GetSessionRequest{SessionKey: key}); err != nil || s.GetFirstSeq() != 1 {
		t.Fatalf("before compaction: %v, %v", s, err)
	}
	s, err := c.CompactSession(ctx, &batonv1.CompactSessionRequest{SessionKey: key, BeforeSeq: 3})
	if err != nil || s.GetFirstSeq() != 3 || s.GetLastSeq() != 5 {
		t.Fatalf("CompactSession: %v, %v", s, err)
	}
	kept, err := c.ListEntries(ctx, &batonv1.ListEntriesRequest{SessionKey: key, AfterSeq: proto.Uint64(2)})
	if err != nil || !slices.Equal(seqs(kept.GetEntries()), []uint64{3, 4, 5}) {
		t.Fatalf("entries kept: %v, %v", kept, err)
	}
	_, err = c.ListEntries(ctx, &batonv1.ListEntriesRequest{SessionKey: key, AfterSeq: proto.Uint64(1)})
	mustError(t, err, "OUT_OF_RANGE")
	n := 0
	for _, err := range c.StreamEntries(ctx, &batonv1.StreamEntriesRequest{SessionKey: key, AfterSeq: 1}) {
		n++
		mustError(t, err, "OUT_OF_RANGE")
	}
	if n != 1 {
		t.Fatalf("a stream below first_seq yielded %d times, want one error", n)
	}
}

func TestLegalHoldBlocksDeleteAndRetentionIsKept(t *testing.T) {
	c := dial(t, sharedServer(t).target(), baton.WithTenant("go-life"))
	ctx := testCtx(t, 30*time.Second)
	key := seeded(t, c, "planner", 2)

	if s, err := c.UpdateSession(ctx, &batonv1.UpdateSessionRequest{SessionKey: key, LegalHold: proto.Bool(true)}); err != nil || !s.GetLegalHold() {
		t.Fatalf("setting the legal hold: %v, %v", s, err)
	}
	_, err := c.DeleteSession(ctx, &batonv1.DeleteSessionRequest{SessionKey: key})
	mustError(t, err, "FAILED_PRECONDITION")
	_, err = c.CompactSession(ctx, &batonv1.CompactSessionRequest{SessionKey: key, BeforeSeq: 2})
	mustError(t, err, "FAILED_PRECONDITION")
	_, err = c.RedactEntries(ctx, &batonv1.RedactEntriesRequest{SessionKey: key, Seqs: []uint64{1}, Reason: "r", Agent: "planner"})
	mustError(t, err, "FAILED_PRECONDITION")
	if l, err := c.ListEntries(ctx, &batonv1.ListEntriesRequest{SessionKey: key}); err != nil || len(l.GetEntries()) != 2 || l.GetEntries()[0].GetRedacted() {
		t.Fatalf("the held session changed: %v, %v", l, err)
	}

	retention := &batonv1.Retention{KeepLatest: 100, MaxAge: durationpb.New(30 * 24 * time.Hour)}
	s, err := c.UpdateSession(ctx, &batonv1.UpdateSessionRequest{SessionKey: key, Retention: retention})
	if err != nil || !s.GetLegalHold() || !proto.Equal(s.GetRetention(), retention) {
		t.Fatalf("setting retention (the hold stays): %v, %v", s, err)
	}

	if s, err := c.UpdateSession(ctx, &batonv1.UpdateSessionRequest{SessionKey: key, LegalHold: proto.Bool(false)}); err != nil || s.GetLegalHold() {
		t.Fatalf("lifting the legal hold: %v, %v", s, err)
	}
	if gone, err := c.DeleteSession(ctx, &batonv1.DeleteSessionRequest{SessionKey: key}); err != nil || gone.GetDeletedEntries() != 2 {
		t.Fatalf("DeleteSession after the hold: %v, %v", gone, err)
	}
}
