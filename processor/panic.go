package processor

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/livechat"
)

// A panic while decoding or transforming one record is a bug triggered by
// that record's content. Left alone it would crash the processor; the
// group would hand the partition to the next processor, which would read
// the same record and crash too, every consumer in turn, and nothing would
// be stored after it. decodeSafely and transformSafely catch such a panic
// and turn it into a dead letter for that record alone (with the panic
// message and where it happened), so the rest flows on and the record
// waits in the dead-letter topic for the fix.

// PanicError is a panic caught in decode or transform.
type PanicError struct {
	// Stage is "decode" or "transform".
	Stage string
	// Value is what was passed to panic.
	Value any
	// Stack is the top of the panicking goroutine's stack.
	Stack string
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("panic in %s: %v (at %s)", e.Stage, e.Value, e.Stack)
}

func newPanicError(stage string, v any) *PanicError {
	return &PanicError{Stage: stage, Value: v, Stack: panicSite(debug.Stack())}
}

// panicSite keeps the first frames below the panic: enough to find the
// line, short enough for a record header.
func panicSite(stack []byte) string {
	lines := strings.Split(string(stack), "\n")
	// Skip the goroutine line and the frames of debug.Stack, this file's
	// deferred function and the runtime's panic machinery.
	var out []string
	for i := 1; i+1 < len(lines) && len(out) < 3; i += 2 {
		fn, at := strings.TrimSpace(lines[i]), strings.TrimSpace(lines[i+1])
		if strings.HasPrefix(fn, "runtime/debug.") || strings.HasPrefix(fn, "panic(") ||
			strings.HasPrefix(fn, "runtime.") || strings.Contains(fn, "newPanicError") || strings.Contains(fn, "Safely.func") {
			continue
		}
		if j := strings.LastIndex(at, " +0x"); j > 0 {
			at = at[:j]
		}
		out = append(out, fn+" "+at)
	}
	return strings.Join(out, " < ")
}

// decodeSafely is decodeRecord with a panic turned into a *PanicError.
func decodeSafely(r *kgo.Record, decode func([]byte) (*livechat.Webhook, error)) (w *livechat.Webhook, err error) {
	defer func() {
		if v := recover(); v != nil {
			w, err = nil, newPanicError("decode", v)
		}
	}()
	return decodeRecord(r, decode)
}

// transformSafely appends the record's rows to b.rows like appendTransform.
// If the transform panics, nothing of it is kept and the record becomes a
// dead letter of b.
func (p *Processor) transformSafely(b *batch, r *kgo.Record, src Source, w *livechat.Webhook) (rows []Row) {
	n := len(b.rows)
	defer func() {
		if v := recover(); v != nil {
			err := newPanicError("transform", v)
			action := ""
			if w != nil {
				action = w.Action
			}
			p.log.Error("transform panicked; record sent to the dead-letter topic", "topic", r.Topic,
				"partition", r.Partition, "offset", r.Offset, "action", action, "error", err)
			rows = b.rows[:n]
			b.dead = append(b.dead, deadLetter(r, err))
			b.bytes += int64(len(r.Value)) + 256
		}
	}()
	// Rows the panicking transform appended stay beyond len(rows) in the
	// backing array, to be overwritten by the next record's.
	return appendTransform(b.rows, src, w, p.users, p.dir)
}
