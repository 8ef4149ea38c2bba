package backoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"github.com/twmb/franz-go/pkg/kerr"
)

func TestClassification(t *testing.T) {
	tests := []struct {
		name               string
		err                error
		retryable, refused bool
	}{
		{"network", fmt.Errorf("insert: %w", io.ErrUnexpectedEOF), true, false},
		{"unknown", errors.New("something"), true, false},
		{"permanent", Permanent(errors.New("bad")), false, false},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), false, false},
		{"kafka leader moving", kerr.NotLeaderForPartition, true, false},
		{"kafka auth (operator heals it)", kerr.TopicAuthorizationFailed, true, false},
		{"kafka invalid timestamp", fmt.Errorf("produce: %w", kerr.InvalidTimestamp), false, true},
		{"kafka too large", kerr.MessageTooLarge, false, true},
		{"clickhouse parse", fmt.Errorf("insert: %w", &proto.Exception{Code: 6, Message: "Cannot parse"}), false, true},
		{"clickhouse view target broken", &proto.Exception{Code: 70, Message: "Type mismatch: while pushing to view db.messages_mv"}, true, false},
		{"clickhouse too many parts", &proto.Exception{Code: 252, Message: "Too many parts"}, true, false},
		{"clickhouse memory", &proto.Exception{Code: 241, Message: "Memory limit"}, true, false},
	}
	for _, tt := range tests {
		if got := Retryable(tt.err); got != tt.retryable {
			t.Errorf("%s: Retryable = %v", tt.name, got)
		}
		if got := Refused(tt.err); got != tt.refused {
			t.Errorf("%s: Refused = %v", tt.name, got)
		}
	}
}

func TestDelayBounds(t *testing.T) {
	p := Policy{Min: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	for attempt := 0; attempt < 40; attempt++ {
		d := p.Delay(attempt)
		step := min(10*time.Millisecond<<min(attempt, 30), 80*time.Millisecond)
		if d < step/2 || d > step {
			t.Fatalf("attempt %d: delay %s outside [%s, %s]", attempt, d, step/2, step)
		}
	}
}

func TestRetry(t *testing.T) {
	p := Policy{Min: time.Millisecond, Max: 2 * time.Millisecond}
	n := 0
	err := p.Retry(context.Background(), func() error {
		n++
		if n < 4 {
			return io.ErrUnexpectedEOF
		}
		return nil
	}, nil)
	if err != nil || n != 4 {
		t.Fatalf("retry: %v after %d attempts", err, n)
	}
	n = 0
	refused := &proto.Exception{Code: 6, Message: "Cannot parse"}
	if err := p.Retry(context.Background(), func() error { n++; return refused }, nil); !errors.Is(err, refused) || n != 1 {
		t.Fatalf("a refusal must not be retried: %v after %d", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	err = p.Retry(ctx, func() error {
		n++
		if n == 3 {
			cancel()
		}
		return io.ErrUnexpectedEOF
	}, nil)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cancelled retry: %v", err)
	}
}

type apiErr struct{ retry bool }

func (e apiErr) Error() string   { return "api" }
func (e apiErr) Retryable() bool { return e.retry }

func TestErrorsSayTheirOwnRetryability(t *testing.T) {
	if !Retryable(fmt.Errorf("call: %w", apiErr{true})) || Retryable(fmt.Errorf("call: %w", apiErr{false})) {
		t.Fatal("an error's own Retryable must decide")
	}
}
