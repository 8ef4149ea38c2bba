// Package backoff is the one way lcpipe waits between attempts and the one
// place that says which failures are worth repeating.
//
// Waits are exponential with jitter, bounded by a Policy and cancelled by a
// context. Classification (Retryable, Refused) knows the errors of the
// services the pipeline talks to: Kafka (kerr), ClickHouse (server
// exceptions) and the network. Infrastructure failures are retried for as
// long as the caller's context allows and never turn into dead letters; a
// record that a service refuses for its content (Refused) is the caller's
// to set aside, alone, with the service's message.
package backoff

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Policy bounds the waits: attempt 0 waits about Min, each further attempt
// twice as long, never more than Max. Zero values mean 100ms and 10s.
type Policy struct {
	Min, Max time.Duration
}

func (p Policy) bounds() (time.Duration, time.Duration) {
	lo, hi := p.Min, p.Max
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi <= 0 {
		hi = 10 * time.Second
	}
	return lo, max(lo, hi)
}

// Delay is the wait before retry number attempt (0-based): the exponential
// step with full jitter over its upper half, so concurrent retriers spread.
func (p Policy) Delay(attempt int) time.Duration {
	lo, hi := p.bounds()
	d := lo << min(max(attempt, 0), 30)
	if d > hi || d <= 0 {
		d = hi
	}
	return d/2 + rand.N(d/2+1)
}

// Wait sleeps Delay(attempt), or until ctx ends (then ctx's error).
func (p Policy) Wait(ctx context.Context, attempt int) error {
	t := time.NewTimer(p.Delay(attempt))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Retry runs op until it succeeds, returns an error that is not Retryable,
// or ctx ends; onRetry (may be nil) hears about each failure that will be
// retried. It returns op's last error (wrapped with ctx's when that ended
// the attempts).
func (p Policy) Retry(ctx context.Context, op func() error, onRetry func(attempt int, err error)) error {
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil {
			return nil
		}
		if !Retryable(err) {
			return err
		}
		if ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		if onRetry != nil {
			onRetry(attempt, err)
		}
		if werr := p.Wait(ctx, attempt); werr != nil {
			return errors.Join(err, werr)
		}
	}
}

type permanent struct{ err error }

func (e permanent) Error() string { return e.err.Error() }
func (e permanent) Unwrap() error { return e.err }

// Permanent marks err as not worth repeating.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// Retryable reports whether repeating the operation may succeed: anything
// but an error marked Permanent, a cancelled or expired context, or a
// record refused for its content (Refused), or an error whose type says it
// is not (a Retryable() bool method, like an API's own errors). Unknown
// errors are retryable:
// for a pipeline that must not lose data, stalling (visibly) beats
// dropping.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var p permanent
	if errors.As(err, &p) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	// Everything else is the infrastructure's (a broker or server away,
	// restarting, overloaded, misconfigured): it heals or an operator
	// heals it, and the data waits.
	if Refused(err) {
		return false
	}
	// An error that knows (an API's own error type) says so itself.
	var self interface{ Retryable() bool }
	if errors.As(err, &self) {
		return self.Retryable()
	}
	return true
}

// Refused reports whether a service refused a record for its content, so
// that sending the same record again fails the same way: Kafka's
// INVALID_TIMESTAMP, MESSAGE_TOO_LARGE, CORRUPT_MESSAGE, INVALID_RECORD,
// POLICY_VIOLATION; a ClickHouse exception about the data itself (parse,
// conversion, size or value errors). A ClickHouse error raised while
// pushing into a materialized view is never a refusal: it is the view's
// table that is broken, not the record (see schema.Repair).
func Refused(err error) bool {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		switch ke.Code {
		case kerr.InvalidTimestamp.Code, kerr.MessageTooLarge.Code, kerr.RecordListTooLarge.Code,
			kerr.CorruptMessage.Code, kerr.InvalidRecord.Code, kerr.PolicyViolation.Code:
			return true
		}
		return false
	}
	var ce *proto.Exception
	if errors.As(err, &ce) {
		if strings.Contains(ce.Message, "while pushing to view") {
			return false
		}
		return refusedClickHouse[ce.Code]
	}
	return false
}

// refusedClickHouse are ClickHouse error codes about the data of an INSERT.
var refusedClickHouse = map[int32]bool{
	6:   true, // CANNOT_PARSE_TEXT
	26:  true, // CANNOT_PARSE_QUOTED_STRING
	27:  true, // CANNOT_PARSE_INPUT_ASSERTION_FAILED
	32:  true, // ATTEMPT_TO_READ_AFTER_EOF (a malformed block)
	38:  true, // CANNOT_PARSE_DATE
	41:  true, // CANNOT_PARSE_DATETIME
	69:  true, // ARGUMENT_OUT_OF_BOUND
	70:  true, // CANNOT_CONVERT_TYPE
	72:  true, // CANNOT_PARSE_NUMBER
	117: true, // INCORRECT_DATA
	131: true, // TOO_LARGE_STRING_SIZE
	190: true, // SIZES_OF_ARRAYS_DOESNT_MATCH
	321: true, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
	395: true, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO
}
