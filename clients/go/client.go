package baton

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/baton-dev/baton/clients/go/batonv1"
)

// TenantHeader is the metadata key that carries the tenant (see WithTenant).
const TenantHeader = "x-baton-tenant"

// LSNHeader is the response header with the server's log position after a write (or a read a
// read replica served): 16 upper-case hexadecimal digits.
const LSNHeader = "baton-lsn"

// MinLSNHeader is the request header with the highest log position the client has been told
// (Client.LogPosition): a server with read replicas serves the call's reads from one that has
// replayed that far, else from the primary, so a client reads its own writes.
const MinLSNHeader = "baton-min-lsn"

// Client is a connection to a Baton server with one method per RPC of ContextService and
// HandoffService. It is safe for concurrent use; Close it when done.
type Client struct {
	conn     *grpc.ClientConn
	contexts batonv1.ContextServiceClient
	handoffs batonv1.HandoffServiceClient
	opts     options
	md       []string
	// position is the highest baton-lsn any call was answered with ("" before the first).
	positionMu sync.Mutex
	position   string
}

// Dial connects to a Baton server at target ("host:port"; an http:// or https:// prefix is
// accepted, https:// meaning TLS). It returns once the connection is up; ctx bounds that wait,
// and a server that cannot be reached fails Dial with an UNAVAILABLE *Error. Afterwards the
// client reconnects by itself whenever the connection drops.
func Dial(ctx context.Context, target string, opts ...Option) (*Client, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.retry.MaxAttempts < 1 {
		o.retry.MaxAttempts = 1
	}
	switch {
	case strings.HasPrefix(target, "https://"):
		target = strings.TrimPrefix(target, "https://")
		o.useTLS = true
	case strings.HasPrefix(target, "http://"):
		target = strings.TrimPrefix(target, "http://")
	}
	target = strings.TrimSuffix(target, "/")

	c := &Client{opts: o}
	if o.logPosition != "" {
		p, ok := normalizePosition(o.logPosition)
		if !ok {
			msg := "WithLogPosition: " + strconv.Quote(o.logPosition) + " is not a log position as baton-lsn gives it (1 to 16 hexadecimal digits)"
			return nil, &Error{Code: CodeName(codes.InvalidArgument), Message: msg, status: status.New(codes.InvalidArgument, msg)}
		}
		c.position = p
	}
	if o.tenant != "" {
		c.md = append(c.md, TenantHeader, o.tenant)
	}
	if o.apiKey != "" {
		c.md = append(c.md, "authorization", "Bearer "+o.apiKey)
	}
	creds := insecure.NewCredentials()
	if o.useTLS {
		creds = credentials.NewTLS(o.tls)
	}
	// Reconnect about as eagerly as calls are retried, so a restarted server is found again
	// within the retry policy's patience; a connection attempt still gets gRPC's usual 20s.
	bo := backoff.DefaultConfig
	bo.BaseDelay = o.retry.InitialBackoff
	if bo.BaseDelay <= 0 {
		bo.BaseDelay = backoff.DefaultConfig.BaseDelay
	}
	if o.retry.MaxBackoff > 0 {
		bo.MaxDelay = o.retry.MaxBackoff
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 20 * time.Second}),
		grpc.WithChainUnaryInterceptor(c.unaryInterceptor),
		grpc.WithChainStreamInterceptor(c.streamInterceptor),
	}
	conn, err := grpc.NewClient(target, append(dialOpts, o.dialOpts...)...)
	if err != nil {
		return nil, &Error{Code: CodeName(codes.InvalidArgument), Message: err.Error(), status: status.New(codes.InvalidArgument, err.Error())}
	}
	c.conn = conn
	c.contexts = batonv1.NewContextServiceClient(conn)
	c.handoffs = batonv1.NewHandoffServiceClient(conn)
	if err := waitReady(ctx, conn); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

// waitReady connects and waits until the connection is ready, has failed (or was lost again
// before it was ready), or ctx ends.
func waitReady(ctx context.Context, conn *grpc.ClientConn) error {
	connecting := false
	for {
		s := conn.GetState()
		failed := false
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			failed = true
		case connectivity.Connecting:
			connecting = true
		case connectivity.Idle:
			failed = connecting
			conn.Connect()
		}
		if failed {
			msg := "cannot connect to " + conn.Target() + " (" + s.String() + ")"
			return &Error{Code: CodeName(codes.Unavailable), Message: msg, status: status.New(codes.Unavailable, msg)}
		}
		if !conn.WaitForStateChange(ctx, s) {
			return asError(ctx.Err())
		}
	}
}

// Close closes the connection; calls in flight fail with CANCELLED.
func (c *Client) Close() error { return c.conn.Close() }

// Conn returns the underlying gRPC connection, e.g. for the raw stubs of package batonv1 or
// the health service. Calls made on it bypass the client's headers, retries and deadlines.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

func (c *Client) outgoing(ctx context.Context) context.Context {
	md := c.md
	if p := c.LogPosition(); p != "" {
		if set, _ := metadata.FromOutgoingContext(ctx); len(set.Get(MinLSNHeader)) == 0 {
			md = append(md[:len(md):len(md)], MinLSNHeader, p)
		}
	}
	if len(md) == 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, md...)
}

// LogPosition is the highest log position the server has told this client of (the baton-lsn
// response header of its unary calls: 16 hexadecimal digits), or "" before the first write to
// a server with read replicas. Every call sends it back in MinLSNHeader (unless its context's
// outgoing metadata sets that header), so reads a read replica serves reflect this client's own
// writes. Hand it to another process's client with WithLogPosition to let it read them too.
func (c *Client) LogPosition() string {
	c.positionMu.Lock()
	defer c.positionMu.Unlock()
	return c.position
}

// notePosition keeps the baton-lsn of a call's response headers if it is higher.
func (c *Client) notePosition(header metadata.MD) {
	for _, told := range header.Get(LSNHeader) {
		p, ok := normalizePosition(told)
		if !ok {
			continue
		}
		c.positionMu.Lock()
		// Fixed width: the higher position is the greater string.
		if p > c.position {
			c.position = p
		}
		c.positionMu.Unlock()
	}
}

// normalizePosition returns a log position in its 16-digit upper-case form.
func normalizePosition(text string) (string, bool) {
	if len(text) == 0 || len(text) > 16 {
		return "", false
	}
	for _, r := range text {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return "", false
		}
	}
	return strings.Repeat("0", 16-len(text)) + strings.ToUpper(text), true
}

// NewIdempotencyKey returns a fresh random idempotency key, as AppendEntries and the creates
// (CreateSession, ForkSession, RequestHandoff) make for a request that has none.
func NewIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "go-" + hex.EncodeToString(b[:])
}

// --- ContextService ------------------------------------------------------------------------

// CreateSession opens a new session owned by the calling agent (its key is generated when
// SessionKey is empty). A request without an IdempotencyKey is sent with a fresh one (req
// itself is not changed), kept on every retry: a retry after a lost answer returns the session
// the first attempt created.
func (c *Client) CreateSession(ctx context.Context, req *batonv1.CreateSessionRequest, opts ...grpc.CallOption) (*batonv1.Session, error) {
	return c.contexts.CreateSession(ctx, keyed(req), opts...)
}

// GetSession returns one session.
func (c *Client) GetSession(ctx context.Context, req *batonv1.GetSessionRequest, opts ...grpc.CallOption) (*batonv1.Session, error) {
	return c.contexts.GetSession(ctx, req, opts...)
}

// ListSessions lists sessions, newest first, one page at a time.
func (c *Client) ListSessions(ctx context.Context, req *batonv1.ListSessionsRequest, opts ...grpc.CallOption) (*batonv1.ListSessionsResponse, error) {
	return c.contexts.ListSessions(ctx, req, opts...)
}

// UpdateSession changes a session's metadata, status or time to live, sets or lifts its legal
// hold (LegalHold, admin keys only; nil leaves it unchanged) or replaces its Retention.
func (c *Client) UpdateSession(ctx context.Context, req *batonv1.UpdateSessionRequest, opts ...grpc.CallOption) (*batonv1.Session, error) {
	return c.contexts.UpdateSession(ctx, req, opts...)
}

// CloseSession closes a session: it stays readable but accepts no more entries.
func (c *Client) CloseSession(ctx context.Context, req *batonv1.CloseSessionRequest, opts ...grpc.CallOption) (*batonv1.Session, error) {
	return c.contexts.CloseSession(ctx, req, opts...)
}

// AppendEntries appends a batch of entries atomically. A request without an IdempotencyKey is
// sent with a fresh one (req itself is not changed), and every retry carries the same key, so
// the entries are stored once however often the call is retried.
func (c *Client) AppendEntries(ctx context.Context, req *batonv1.AppendEntriesRequest, opts ...grpc.CallOption) (*batonv1.AppendEntriesResponse, error) {
	return c.contexts.AppendEntries(ctx, keyed(req), opts...)
}

// idempotent is a request that carries an idempotency key.
type idempotent interface {
	proto.Message
	GetIdempotencyKey() string
}

// keyed returns req, or a copy of it with a fresh idempotency key when it has none.
func keyed[R idempotent](req R) R {
	if req.GetIdempotencyKey() != "" {
		return req
	}
	out := proto.Clone(req).(R)
	m := out.ProtoReflect()
	m.Set(m.Descriptor().Fields().ByName("idempotency_key"), protoreflect.ValueOfString(NewIdempotencyKey()))
	return out
}

// ListEntries lists a session's entries in sequence order, one page at a time.
func (c *Client) ListEntries(ctx context.Context, req *batonv1.ListEntriesRequest, opts ...grpc.CallOption) (*batonv1.ListEntriesResponse, error) {
	return c.contexts.ListEntries(ctx, req, opts...)
}

// GetContextWindow returns the newest entries that fit a token budget, after the latest
// summary entry.
func (c *Client) GetContextWindow(ctx context.Context, req *batonv1.GetContextWindowRequest, opts ...grpc.CallOption) (*batonv1.GetContextWindowResponse, error) {
	return c.contexts.GetContextWindow(ctx, req, opts...)
}

// SearchEntries searches the entries' text, best matches first.
func (c *Client) SearchEntries(ctx context.Context, req *batonv1.SearchEntriesRequest, opts ...grpc.CallOption) (*batonv1.SearchEntriesResponse, error) {
	return c.contexts.SearchEntries(ctx, req, opts...)
}

// DeleteSession erases a session for good: its entries, handoffs and idempotency records.
// Followers' streams end with NOT_FOUND. It fails with FAILED_PRECONDITION while the session
// is under legal hold, and is not repeated after a lost answer (the session may be gone).
func (c *Client) DeleteSession(ctx context.Context, req *batonv1.DeleteSessionRequest, opts ...grpc.CallOption) (*batonv1.DeleteSessionResponse, error) {
	return c.contexts.DeleteSession(ctx, req, opts...)
}

// ForkSession starts a new session, owned by req.Agent, whose entries 1..AtSeq (0: the
// source's newest) are copies of another session's; its ForkedFrom names the source and seq.
// Handoffs are not copied. Like CreateSession it carries an IdempotencyKey (fresh unless
// set), so a retry returns the first fork instead of making a second.
func (c *Client) ForkSession(ctx context.Context, req *batonv1.ForkSessionRequest, opts ...grpc.CallOption) (*batonv1.Session, error) {
	return c.contexts.ForkSession(ctx, keyed(req), opts...)
}

// RedactEntries erases the content and metadata of the entries req.Seqs; each keeps its seq,
// kind, role, author and timestamps and reads back with Redacted set and a Redaction (who,
// when, why). With ExpectedLastSeq it redacts only while that is the session's newest seq
// (FAILED_PRECONDITION otherwise), so an agent can retract exactly the entry it appended last.
func (c *Client) RedactEntries(ctx context.Context, req *batonv1.RedactEntriesRequest, opts ...grpc.CallOption) (*batonv1.RedactEntriesResponse, error) {
	return c.contexts.RedactEntries(ctx, req, opts...)
}

// CompactSession removes the entries before req.BeforeSeq; the session's FirstSeq moves to
// the oldest one kept, and reads below it fail with OUT_OF_RANGE. Removing the newest SUMMARY
// entry needs Force.
func (c *Client) CompactSession(ctx context.Context, req *batonv1.CompactSessionRequest, opts ...grpc.CallOption) (*batonv1.Session, error) {
	return c.contexts.CompactSession(ctx, req, opts...)
}

// --- HandoffService ------------------------------------------------------------------------

// RequestHandoff asks another agent to take over or join the work on a session. It carries an
// IdempotencyKey (fresh unless set), so a retry returns the first handoff instead of
// requesting a second.
func (c *Client) RequestHandoff(ctx context.Context, req *batonv1.RequestHandoffRequest, opts ...grpc.CallOption) (*batonv1.Handoff, error) {
	return c.handoffs.RequestHandoff(ctx, keyed(req), opts...)
}

// GetHandoff returns one handoff.
func (c *Client) GetHandoff(ctx context.Context, req *batonv1.GetHandoffRequest, opts ...grpc.CallOption) (*batonv1.Handoff, error) {
	return c.handoffs.GetHandoff(ctx, req, opts...)
}

// ListHandoffs lists handoffs, newest first, one page at a time.
func (c *Client) ListHandoffs(ctx context.Context, req *batonv1.ListHandoffsRequest, opts ...grpc.CallOption) (*batonv1.ListHandoffsResponse, error) {
	return c.handoffs.ListHandoffs(ctx, req, opts...)
}

// AcceptHandoff makes the target agent take a pending handoff. Like the other transitions, it
// is retried after a lost answer: repeated on a handoff already accepted, it returns it
// unchanged.
func (c *Client) AcceptHandoff(ctx context.Context, req *batonv1.AcceptHandoffRequest, opts ...grpc.CallOption) (*batonv1.Handoff, error) {
	return c.handoffs.AcceptHandoff(ctx, req, opts...)
}

// RejectHandoff makes the target agent decline a pending handoff.
func (c *Client) RejectHandoff(ctx context.Context, req *batonv1.RejectHandoffRequest, opts ...grpc.CallOption) (*batonv1.Handoff, error) {
	return c.handoffs.RejectHandoff(ctx, req, opts...)
}

// CompleteHandoff marks an accepted handoff done (by its target agent).
func (c *Client) CompleteHandoff(ctx context.Context, req *batonv1.CompleteHandoffRequest, opts ...grpc.CallOption) (*batonv1.Handoff, error) {
	return c.handoffs.CompleteHandoff(ctx, req, opts...)
}

// CancelHandoff withdraws a pending or accepted handoff (by its requesting agent).
func (c *Client) CancelHandoff(ctx context.Context, req *batonv1.CancelHandoffRequest, opts ...grpc.CallOption) (*batonv1.Handoff, error) {
	return c.handoffs.CancelHandoff(ctx, req, opts...)
}
