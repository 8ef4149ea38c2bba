package processor

import (
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/wire"
)

func panicTestRecord(t *testing.T, name string, offset int64) *kgo.Record {
	t.Helper()
	b, err := os.ReadFile("../internal/livechat/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return identityRecord(b, time.Now(), "req", 0, offset)
}

// TestPanicInDecodeIsDeadLettered: a record whose decoding panics (here a
// nil record: decodeRecord dereferences it) comes back from decodeAll as a
// *PanicError, on the sequential and on the parallel path (a panic in a
// decode goroutine used to take the whole process down), and its dead
// letter carries the panic message.
func TestPanicInDecodeIsDeadLettered(t *testing.T) {
	good := panicTestRecord(t, "thread_tagged.json", 1)
	for _, n := range []int{3, 300} { // one worker, several
		t.Run(map[int]string{3: "sequential", 300: "parallel"}[n], func(t *testing.T) {
			p := &Processor{cfg: DefaultConfig()}
			p.cfg.DecodeWorkers = 4
			recs := make([]*kgo.Record, n)
			for i := range recs {
				recs[i] = good
			}
			recs[n/2] = nil
			dec := p.decodeAll(recs)
			for i, d := range dec {
				if i == n/2 {
					var pe *PanicError
					if !errors.As(d.err, &pe) || pe.Stage != "decode" || !strings.Contains(pe.Error(), "nil pointer") {
						t.Fatalf("record %d: %v, want a decode *PanicError", i, d.err)
					}
					dl := deadLetter(good, d.err)
					if msg := wire.Header(dl, wire.HeaderDLQError); !strings.HasPrefix(msg, "panic in decode: ") || !strings.Contains(msg, "decodeRecord") {
						t.Fatalf("dead letter error %q", msg)
					}
					t.Logf("dead letter error: %s", wire.Header(dl, wire.HeaderDLQError))
					continue
				}
				if d.err != nil || d.w == nil {
					t.Fatalf("record %d: %v", i, d.err)
				}
			}
		})
	}
}

// TestPanicInTransformIsDeadLettered: when the transform of a record panics
// (here: no webhook to transform), the batch keeps none of its rows and one
// dead letter with the panic message; the records around it are
// transformed as usual.
func TestPanicInTransformIsDeadLettered(t *testing.T) {
	p := &Processor{cfg: DefaultConfig(), log: slog.New(slog.DiscardHandler), users: NewUserCache(0)}
	b := newBatch(p.cfg)
	add := func(r *kgo.Record) {
		w, err := decodeRecord(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		b.rows = p.transformSafely(b, r, sourceOf(r), w)
	}
	add(panicTestRecord(t, "incoming_chat.json", 1))
	n := len(b.rows)
	if n == 0 {
		t.Fatal("no rows from incoming_chat")
	}
	bad := panicTestRecord(t, "thread_tagged.json", 2)
	b.rows = p.transformSafely(b, bad, sourceOf(bad), nil)
	if len(b.rows) != n {
		t.Fatalf("rows after the panic: %d, want %d", len(b.rows), n)
	}
	if len(b.dead) != 1 {
		t.Fatalf("%d dead letters", len(b.dead))
	}
	dl := b.dead[0]
	if msg := wire.Header(dl, wire.HeaderDLQError); !strings.HasPrefix(msg, "panic in transform: ") || string(dl.Value) != string(bad.Value) ||
		wire.Header(dl, wire.HeaderDLQOffset) != "2" {
		t.Fatalf("dead letter: error %q offset %q", msg, wire.Header(dl, wire.HeaderDLQOffset))
	}
	add(panicTestRecord(t, "thread_tagged.json", 3))
	if len(b.rows) != n+1 || b.rows[n].Action != "thread_tagged" {
		t.Fatalf("record after the panic: %d rows", len(b.rows)-n)
	}
}

// TestDecodeOfBrokenEscape: goccy/go-json, under livechat.Decode, reads past
// the end of its buffer on a key cut short after a backslash and panics or
// not depending on the memory there (found by FuzzDecode). Ingest never
// stores such a body (not valid JSON); if one reached the processor anyway,
// it is an error for that record (a dead letter), never a crash.
func TestDecodeOfBrokenEscape(t *testing.T) {
	for _, body := range []string{`{"\`, `{"a\`, `{"\u`, `{"\u00`, `{"action":"a","organization_id":"o","\`} {
		for i := range 200 {
			// Vary what lies after the body in memory.
			buf := make([]byte, len(body), len(body)+i%16)
			copy(buf, body)
			r := identityRecord(buf, time.Now(), "req", 0, int64(i))
			if w, err := decodeSafely(r, nil); err == nil {
				t.Fatalf("%q decoded: %+v", body, w.Envelope)
			}
		}
	}
}
