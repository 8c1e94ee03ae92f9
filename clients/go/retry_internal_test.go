package baton

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

func TestBackoffIsExponentialJitteredAndCapped(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 10, InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 2}
	for i := 0; i < 200; i++ {
		for attempt, full := range map[int]time.Duration{2: 100 * time.Millisecond, 3: 200 * time.Millisecond, 4: 400 * time.Millisecond, 9: time.Second} {
			d := p.backoff(attempt, 0)
			if d < full/2 || d > full {
				t.Fatalf("attempt %d waited %v, want within [%v, %v]", attempt, d, full/2, full)
			}
		}
		if d := p.backoff(2, 3*time.Second); d != 3*time.Second {
			t.Fatalf("a longer RetryInfo delay was not honoured: %v", d)
		}
	}
}

func TestCodeNames(t *testing.T) {
	for c, want := range map[codes.Code]string{codes.NotFound: "NOT_FOUND", codes.InvalidArgument: "INVALID_ARGUMENT",
		codes.Canceled: "CANCELLED", codes.Unauthenticated: "UNAUTHENTICATED", codes.Code(99): "CODE(99)"} {
		if got := CodeName(c); got != want {
			t.Errorf("CodeName(%v) = %s, want %s", c, got, want)
		}
	}
}
