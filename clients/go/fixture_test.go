package baton_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	baton "github.com/baton-dev/baton/clients/go"
	"github.com/baton-dev/baton/clients/go/batonv1"
)

// scripted is an in-process gRPC server whose answers a test scripts: it checks what the
// client sends (headers, attempts, keys) in ways batond does not expose.
type scripted struct {
	batonv1.UnimplementedContextServiceServer
	mu       sync.Mutex
	md       []metadata.MD
	keys     []string
	failures []error // returned in order, then success
}

func (s *scripted) record(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	s.md = append(s.md, md)
	if len(s.failures) > 0 {
		err := s.failures[0]
		s.failures = s.failures[1:]
		return err
	}
	return nil
}

func (s *scripted) attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.md)
}

func (s *scripted) GetSession(ctx context.Context, r *batonv1.GetSessionRequest) (*batonv1.Session, error) {
	if err := s.record(ctx); err != nil {
		return nil, err
	}
	return &batonv1.Session{SessionKey: r.GetSessionKey()}, nil
}

func (s *scripted) CreateSession(ctx context.Context, r *batonv1.CreateSessionRequest) (*batonv1.Session, error) {
	if err := s.record(ctx); err != nil {
		return nil, err
	}
	return &batonv1.Session{SessionKey: r.GetSessionKey()}, nil
}

func (s *scripted) CloseSession(ctx context.Context, r *batonv1.CloseSessionRequest) (*batonv1.Session, error) {
	if err := s.record(ctx); err != nil {
		return nil, err
	}
	return &batonv1.Session{SessionKey: r.GetSessionKey()}, nil
}

func (s *scripted) AppendEntries(ctx context.Context, r *batonv1.AppendEntriesRequest) (*batonv1.AppendEntriesResponse, error) {
	s.mu.Lock()
	s.keys = append(s.keys, r.GetIdempotencyKey())
	s.mu.Unlock()
	if err := s.record(ctx); err != nil {
		return nil, err
	}
	return &batonv1.AppendEntriesResponse{FirstSeq: 1, LastSeq: 1}, nil
}

func startScripted(t *testing.T, failures ...error) (*scripted, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{failures: failures}
	gs := grpc.NewServer()
	batonv1.RegisterContextServiceServer(gs, s)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return s, ln.Addr().String()
}

func withRetryInfo(code codes.Code, delay time.Duration) error {
	st, err := status.New(code, "busy").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func TestHeadersOnEveryCall(t *testing.T) {
	s, addr := startScripted(t)
	c := dial(t, addr, baton.WithTenant("acme"), baton.WithAPIKey("secret-key"))
	ctx := testCtx(t, 10*time.Second)
	if _, err := c.GetSession(ctx, &batonv1.GetSessionRequest{SessionKey: "k"}); err != nil {
		t.Fatal(err)
	}
	md := s.md[0]
	if got := md.Get(baton.TenantHeader); len(got) != 1 || got[0] != "acme" {
		t.Fatalf("x-baton-tenant: %v", got)
	}
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer secret-key" {
		t.Fatalf("authorization: %v", got)
	}
}

func TestRetryHonoursRetryInfo(t *testing.T) {
	s, addr := startScripted(t,
		withRetryInfo(codes.ResourceExhausted, 300*time.Millisecond),
		withRetryInfo(codes.Unavailable, 300*time.Millisecond))
	c := dial(t, addr, baton.WithRetryPolicy(baton.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, Multiplier: 2}))
	start := time.Now()
	if _, err := c.AppendEntries(testCtx(t, 10*time.Second), &batonv1.AppendEntriesRequest{SessionKey: "k"}); err != nil {
		t.Fatalf("AppendEntries after two retryable failures: %v", err)
	}
	if s.attempts() != 3 {
		t.Fatalf("%d attempts, want 3", s.attempts())
	}
	if el := time.Since(start); el < 600*time.Millisecond {
		t.Fatalf("retried after %v: the RetryInfo delays (2 x 300ms) were not honoured", el)
	}
	if s.keys[0] == "" || s.keys[1] != s.keys[0] || s.keys[2] != s.keys[0] {
		t.Fatalf("idempotency keys across attempts: %q", s.keys)
	}
}

func TestRetryGivesUp(t *testing.T) {
	bare := status.Error(codes.Unavailable, "connection lost")
	// A non-idempotent write is not repeated after an UNAVAILABLE that may have been handled.
	s, addr := startScripted(t, bare)
	c := dial(t, addr)
	_, err := c.CloseSession(testCtx(t, 10*time.Second), &batonv1.CloseSessionRequest{SessionKey: "k"})
	mustError(t, err, "UNAVAILABLE")
	if s.attempts() != 1 {
		t.Fatalf("CloseSession tried %d times after a bare UNAVAILABLE", s.attempts())
	}
	// A read is, up to MaxAttempts; other codes are returned at once.
	s, addr = startScripted(t, bare, bare, bare, bare)
	c = dial(t, addr, baton.WithRetryPolicy(baton.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Multiplier: 2}))
	_, err = c.GetSession(testCtx(t, 10*time.Second), &batonv1.GetSessionRequest{SessionKey: "k"})
	mustError(t, err, "UNAVAILABLE")
	if s.attempts() != 3 {
		t.Fatalf("GetSession tried %d times, want 3", s.attempts())
	}
	s, addr = startScripted(t, status.Error(codes.Internal, "boom"))
	c = dial(t, addr)
	_, err = c.GetSession(testCtx(t, 10*time.Second), &batonv1.GetSessionRequest{SessionKey: "k"})
	mustError(t, err, "INTERNAL")
	if s.attempts() != 1 {
		t.Fatalf("INTERNAL was retried (%d attempts)", s.attempts())
	}
}
