package ingest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/ingest/spool"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/secret"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
)

func TestSpoolEntryRoundTrip(t *testing.T) {
	at := time.Date(2025, 3, 14, 9, 15, 2, 123456789, time.UTC)
	rec := &kgo.Record{Key: []byte("org/chat"), Value: []byte(`{"a":1}`), Timestamp: at,
		Headers: []kgo.RecordHeader{{Key: wire.HeaderReceivedAt, Value: []byte(wire.FormatTime(at))}, {Key: "empty", Value: nil}}}
	b := encodeSpoolEntry(rec, kgo.RecordHeader{Key: wire.HeaderSpooled, Value: []byte("1")})
	got, err := decodeSpoolEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Key) != "org/chat" || string(got.Value) != `{"a":1}` || !got.Timestamp.Equal(at) ||
		len(got.Headers) != 3 || wire.Header(got, wire.HeaderSpooled) != "1" || wire.Header(got, wire.HeaderReceivedAt) != wire.FormatTime(at) {
		t.Fatalf("round trip: %+v", got)
	}
	if len(rec.Headers) != 2 {
		t.Fatal("encoding modified the record's headers")
	}
	for i := range b {
		if _, err := decodeSpoolEntry(b[:i]); err == nil {
			t.Fatalf("truncated entry (%d of %d bytes) decoded", i, len(b))
		}
	}
	if _, err := decodeSpoolEntry(append(b, 0)); err == nil {
		t.Fatal("entry with trailing bytes decoded")
	}
}

// TestSpooledRecordKeepsTraceAndHook posts with an incoming W3C traceparent
// while Kafka is away: the spooled record continues the caller's trace, and
// a panicking OnAccepted hook does not turn the durable webhook into a 503.
func TestSpooledRecordKeepsTraceAndHook(t *testing.T) {
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = []string{freeAddr(t)}
	cfg := testConfig(t, kcfg)
	cfg.KafkaTimeout = 100 * time.Millisecond
	cfg.OnAccepted = func(string, string, time.Time) { panic("hook bug") }
	srv := startServer(t, cfg)
	url := srv.url
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	r := postWebhook(t, url, fixtures(t)["thread_tagged.json"], "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	if st := srv.Stats(); st.Spool.Records != 1 || st.Counters.Spooled != 1 {
		t.Fatalf("stats %+v", st)
	}
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	// Read the entry back, after the server closed its spool, the way
	// the drain of the next start would.
	sp, err := spool.Open(spool.DefaultConfig(cfg.Spool.Dir))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got *kgo.Record
	_ = sp.Drain(ctx, func(_ context.Context, recs [][]byte) error {
		got, err = decodeSpoolEntry(recs[0])
		cancel()
		return err
	})
	if got == nil {
		t.Fatalf("nothing drained: %v", err)
	}
	if tp := wire.Header(got, wire.HeaderTraceparent); !strings.Contains(tp, traceID) {
		t.Fatalf("traceparent %q does not continue trace %s", tp, traceID)
	}
	if wire.Header(got, wire.HeaderSpooled) != "1" || wire.Header(got, wire.HeaderRequestID) == "" {
		t.Fatalf("headers %v", got.Headers)
	}
	segs, _ := filepath.Glob(filepath.Join(cfg.Spool.Dir, "*.seg"))
	for _, s := range segs {
		b, _ := os.ReadFile(s)
		assertNoSecret(t, "spool", b)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		err  string
	}{
		{"defaults", func(*Config) {}, ""},
		{"no brokers", func(c *Config) { c.Kafka.Brokers = nil }, "no brokers"},
		{"kafka timeout near LiveChat's", func(c *Config) { c.KafkaTimeout = 10 * time.Second }, "well below"},
		{"negative timeout", func(c *Config) { c.DrainTimeout = -1 }, "negative"},
		{"empty secret", func(c *Config) { c.Secrets = []secret.Secret{"a", ""} }, "secret #2 is empty"},
		{"body larger than a spool record", func(c *Config) { c.MaxBodyBytes = 64 << 20 }, "does not fit"},
		{"no spool dir", func(c *Config) { c.Spool.Dir = "" }, "SPOOL_DIR"},
		{"segment over cap", func(c *Config) { c.Spool.MaxBytes = 1 << 20; c.Spool.SegmentBytes = 2 << 20 }, "segment size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
	if s := fmt.Sprintf("%v %#v %s", secret.Secret("hunter2"), secret.Secret("hunter2"), []secret.Secret{"hunter2"}); strings.Contains(s, "hunter2") {
		t.Fatalf("secret printed: %s", s)
	}
}

// TestRefusedRecordIsQuarantined makes the raw topic refuse large records
// (max.message.bytes 4 KiB): a 6 KB webhook is still answered 200 (it is
// spooled), and the drain, instead of retrying it forever, keeps it in
// DeadDir, announces it on the dead-letter topic and goes on delivering the
// webhooks behind it.
func TestRefusedRecordIsQuarantined(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	kcfg.RawTopic = testenv.Name(t, "raw_small")
	cl := testenv.KafkaClient(t, kcfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A topic created for records of at most 4 KiB; ingest's own config
	// keeps the default, so its producer sends the larger body.
	tiny := kcfg
	tiny.MaxMessageBytes = 4096
	if err := kafka.EnsureTopics(ctx, cl, tiny, nil, kcfg.RawTopic); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	cfg := testConfig(t, kcfg)
	cfg.KafkaTimeout = 500 * time.Millisecond
	cfg.Spool.RetryMin, cfg.Spool.RetryMax = 10*time.Millisecond, 100*time.Millisecond
	srv := startServer(t, cfg)
	fx := fixtures(t)
	big, small := fx["incoming_chat.json"], fx["chat_deactivated.json"]
	for _, b := range [][]byte{big, small} {
		if r := postWebhook(t, srv.url, b); r.status != 200 {
			t.Fatalf("status %d %s", r.status, r.body)
		}
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := srv.Stats(); st.Spool.Records > 0 || st.Counters.Quarantined != 1 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	raw := consume(t, kcfg, kcfg.RawTopic, 1, time.Second)
	if len(raw) != 1 || wire.Header(raw[0], wire.HeaderAction) != "chat_deactivated" {
		t.Fatalf("raw topic: %d records", len(raw))
	}
	dlq := consume(t, kcfg, kcfg.DLQTopic, 1, 500*time.Millisecond)
	if len(dlq) != 1 || wire.Header(dlq[0], wire.HeaderAction) != "incoming_chat" ||
		!strings.Contains(wire.Header(dlq[0], wire.HeaderDLQError), "MESSAGE_TOO_LARGE") || len(dlq[0].Value) != 0 {
		t.Fatalf("dead-letter notice: %+v", dlq)
	}
	files, _ := filepath.Glob(filepath.Join(cfg.Spool.Dir, "dead", "*.rec"))
	if len(files) != 1 {
		t.Fatalf("dead files: %v", files)
	}
	b, _ := os.ReadFile(files[0])
	rec, err := decodeSpoolEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Replace(big, []byte(`"secret_key": "test-secret"`), []byte(`"secret_key": ""`), 1)
	if !bytes.Equal(rec.Value, want) {
		t.Fatal("quarantined body is not the webhook with its secret blanked")
	}
}

// TestAppendAddr: the remote-addr header reads as net.Addr's String.
func TestAppendAddr(t *testing.T) {
	for _, a := range []net.Addr{
		&net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 443},
		&net.TCPAddr{IP: net.ParseIP("203.0.113.7").To4(), Port: 1},
		&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 8080},
		&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 80, Zone: "eth0"},
		&net.UnixAddr{Name: "/run/ingest.sock", Net: "unix"},
	} {
		if got := string(appendAddr([]byte("x"), a)); got != "x"+a.String() {
			t.Errorf("%#v: %q, want %q", a, got, "x"+a.String())
		}
	}
}
