package baton_test

import (
	"regexp"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	baton "github.com/baton-dev/baton/clients/go"
	"github.com/baton-dev/baton/clients/go/batonv1"
)

// Read-your-writes through a read replica: batond reads from a replica that is held back (it
// applies nothing written after it was made), so a read it serves misses every write of the
// test, and only a client that sends its log position back (baton-min-lsn) is served by the
// primary.
func TestReadsFollowTheClientsOwnWrites(t *testing.T) {
	srv := replicaServer(t)
	tenant := uniq("go-replica")
	ctx := testCtx(t, 60*time.Second)
	keys := func(c *baton.Client) []string {
		t.Helper()
		resp, err := c.ListSessions(ctx, &batonv1.ListSessionsRequest{})
		if err != nil {
			t.Fatalf("ListSessions: %v", err)
		}
		var out []string
		for _, s := range resp.GetSessions() {
			out = append(out, s.GetSessionKey())
		}
		return out
	}

	// Until batond's first probe found the replica, reads go to the primary; a read the replica
	// serves answers with the position it replayed, so a fresh client has one after it.
	for deadline := time.Now().Add(20 * time.Second); ; {
		probe := dial(t, srv.target(), baton.WithTenant(tenant))
		keys(probe)
		if probe.LogPosition() != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("batond never served a read from the read replica")
		}
		time.Sleep(100 * time.Millisecond)
	}

	a := dial(t, srv.target(), baton.WithTenant(tenant))
	if p := a.LogPosition(); p != "" {
		t.Fatalf("a new client has position %q", p)
	}
	s, err := a.CreateSession(ctx, &batonv1.CreateSessionRequest{Agent: "writer"})
	if err != nil {
		t.Fatal(err)
	}
	created := a.LogPosition()
	if !regexp.MustCompile(`^[0-9A-F]{16}$`).MatchString(created) {
		t.Fatalf("after a write: position %q, want 16 hexadecimal digits", created)
	}
	if _, err := a.AppendEntries(ctx, &batonv1.AppendEntriesRequest{SessionKey: s.GetSessionKey(), Entries: []*batonv1.NewEntry{msg("writer", "hi")}}); err != nil {
		t.Fatal(err)
	}
	appended := a.LogPosition()
	if appended < created {
		t.Fatalf("the position went back: %s then %s", created, appended)
	}
	if !slices.Contains(keys(a), s.GetSessionKey()) {
		t.Fatal("A sent its position, so the primary should have served its list: the session is missing")
	}

	b := dial(t, srv.target(), baton.WithTenant(tenant))
	if slices.Contains(keys(b), s.GetSessionKey()) {
		t.Fatal("B has no position, so the held-back replica should have served its list: the session is there")
	}
	if p := b.LogPosition(); p == "" || p >= created {
		t.Fatalf("B's position %q should be the replica's, before A's write %s", p, created)
	}

	handed := dial(t, srv.target(), baton.WithTenant(tenant), baton.WithLogPosition(appended))
	if handed.LogPosition() != appended {
		t.Fatalf("WithLogPosition(%s): LogPosition() = %q", appended, handed.LogPosition())
	}
	if !slices.Contains(keys(handed), s.GetSessionKey()) {
		t.Fatal("a client handed A's position should read A's writes")
	}
	short := dial(t, srv.target(), baton.WithTenant(tenant), baton.WithLogPosition("16b3748"))
	if p := short.LogPosition(); p != "00000000016B3748" {
		t.Fatalf("WithLogPosition(16b3748): LogPosition() = %q", p)
	}
	_, err = baton.Dial(ctx, srv.target(), baton.WithLogPosition("0/16B3748"))
	mustError(t, err, "INVALID_ARGUMENT")

	// A position the caller sets itself is sent instead of the client's; a bad one is refused.
	bad := metadata.AppendToOutgoingContext(ctx, baton.MinLSNHeader, "xyz")
	_, err = a.ListSessions(bad, &batonv1.ListSessionsRequest{})
	mustError(t, err, "INVALID_ARGUMENT")
}
