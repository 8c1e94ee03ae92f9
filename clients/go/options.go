package baton

import (
	"crypto/tls"
	"time"

	"google.golang.org/grpc"
)

// DefaultTimeout is the deadline given to a unary call whose context has none.
const DefaultTimeout = 10 * time.Second

// Option configures a Client in Dial.
type Option func(*options)

type options struct {
	tenant   string
	apiKey   string
	tls      *tls.Config
	useTLS   bool
	timeout  time.Duration
	retry    RetryPolicy
	dialOpts []grpc.DialOption
	// logPosition is the log position the client starts from (WithLogPosition).
	logPosition string
}

func defaultOptions() options {
	return options{timeout: DefaultTimeout, retry: DefaultRetryPolicy}
}

// WithTenant sends the tenant in the x-baton-tenant header of every call.
func WithTenant(tenant string) Option {
	return func(o *options) { o.tenant = tenant }
}

// WithAPIKey sends "authorization: Bearer <key>" with every call.
func WithAPIKey(key string) Option {
	return func(o *options) { o.apiKey = key }
}

// WithTLS connects over TLS with the given configuration; nil uses the system's root
// certificates. A target with an https:// prefix turns TLS on too.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) {
		o.useTLS = true
		o.tls = cfg
	}
}

// WithTimeout sets the deadline of a unary call whose context has none (retries included);
// zero leaves such calls without a deadline. The default is DefaultTimeout. Streams run until
// their context ends: give a context with a deadline to bound them.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// WithRetryPolicy replaces DefaultRetryPolicy for unary calls and stream resumption.
// RetryPolicy{MaxAttempts: 1} turns retries and resumption off.
func WithRetryPolicy(p RetryPolicy) Option {
	return func(o *options) { o.retry = p }
}

// WithDialOptions passes extra options to grpc.NewClient, e.g. a stats handler for
// OpenTelemetry or a custom dialer. They are applied after the client's own.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithLogPosition starts the client at a log position another client's LogPosition gave (e.g.
// handed over by the agent that wrote): its reads then reflect that client's writes, as they
// do its own. Dial fails with INVALID_ARGUMENT when pos is not 1 to 16 hexadecimal digits.
func WithLogPosition(pos string) Option {
	return func(o *options) { o.logPosition = pos }
}
