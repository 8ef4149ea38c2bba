package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
)

func TestKeyOrderTurns(t *testing.T) {
	o := newKeyOrder()
	ctx := context.Background()
	first, err := o.wait(ctx, "k", 0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := o.wait(ctx, "other", 0) // other keys do not wait
	if err != nil {
		t.Fatal(err)
	}
	other.end()
	got := make(chan *turn)
	go func() {
		tn, err := o.wait(ctx, "k", 0)
		if err != nil {
			t.Error(err)
		}
		got <- tn
	}()
	// The second turn must not start while the first is out. Its wait
	// gives up on an expired context without letting a later turn pass.
	expired, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := o.wait(expired, "k", 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait with a cancelled context: %v", err)
	}
	if _, err := o.wait(ctx, "k", 10*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait past its bound: %v", err)
	}
	select {
	case <-got:
		t.Fatal("second turn started while the first was out")
	default:
	}
	first.end()
	second := <-got
	fourth := make(chan *turn)
	go func() {
		tn, _ := o.wait(ctx, "k", 0)
		fourth <- tn
	}()
	second.end() // the abandoned third turn ends by itself, then the fourth goes
	(<-fourth).end()
	o.addSpooled("k", 2)
	if o.spooled("k") != 2 {
		t.Fatal("spooled count")
	}
	o.addSpooled("k", -3)
	o.addSpooled("never", -1)
	if n := o.len(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

// hasEvent reports whether any record carries the event of chat/seq made
// by eventBody and, spooled tells, whether it is a drain's record.
func isEvent(r *kgo.Record, chat string, seq int) bool {
	return bytes.Contains(r.Value, []byte(fmt.Sprintf(`"%s_%06d"`, chat, seq)))
}

func isSpooled(r *kgo.Record) bool { return wire.Header(r, wire.HeaderSpooled) == "1" }

// TestTimedOutWebhookNotOvertaken: webhook A of a chat waits for a Kafka
// ack that does not come in time and goes to the spool; webhook B of the
// same chat, posted while A waits, finds Kafka answering. B must not reach
// the topic before A (before the fix it went straight to Kafka, was acked
// at once and A followed from the spool later).
func TestTimedOutWebhookNotOvertaken(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	cfg := testConfig(t, kcfg)
	cfg.KafkaTimeout = 500 * time.Millisecond
	cfg.Spool.RetryMin, cfg.Spool.RetryMax = 10*time.Millisecond, 50*time.Millisecond
	aWaits := make(chan struct{})
	var once sync.Once
	cfg.beforeProduce = func(ctx context.Context, recs []*kgo.Record) error {
		for _, r := range recs {
			if isEvent(r, "ORDER", 0) && !isSpooled(r) {
				once.Do(func() { close(aWaits) })
				<-ctx.Done() // no ack in time
				return ctx.Err()
			}
		}
		return nil
	}
	srv := startServer(t, cfg)
	tmpl := fixtures(t)["incoming_event.agent_message.json"]
	statuses := make(chan int, 2)
	post := func(seq int) {
		r, err := doRequest("POST", srv.url+WebhookPath, "application/json", eventBody(tmpl, "ORDER", seq))
		if err != nil {
			t.Error(err)
		}
		statuses <- r.status
	}
	go post(0)
	<-aWaits
	go post(1)
	for range 2 {
		if s := <-statuses; s != 200 {
			t.Fatalf("status %d", s)
		}
	}
	recs := consume(t, kcfg, kcfg.RawTopic, 2, time.Second)
	checkDelivered(t, recs, map[string]int{"ORDER": 2})
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := srv.order.len(); n != 0 {
			return fmt.Errorf("%d keys still tracked", n)
		}
		return nil
	})
}

// TestFullSpoolKeepsChatOrder: the spool is full and its drain is held
// back while Kafka answers. A chat with records in the spool gets 503 (it
// would overtake them in Kafka; before the fix it went to Kafka and got
// 200), a chat without any goes to Kafka; once the spool drained, the first
// chat goes to Kafka too, behind its spooled records.
func TestFullSpoolKeepsChatOrder(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	cfg := testConfig(t, kcfg)
	cfg.KafkaTimeout = 3 * time.Second // Y0 must get its ack even on a busy machine
	cfg.MaxBodyBytes = 16 << 10
	cfg.Spool.MaxRecordBytes = 1 << 20
	cfg.Spool.MaxBytes = 12 << 10
	cfg.Spool.SegmentBytes = 4 << 10
	cfg.Spool.RetryMin, cfg.Spool.RetryMax = 10*time.Millisecond, 50*time.Millisecond
	release := make(chan struct{})
	var refuseFirst sync.Once
	cfg.beforeProduce = func(ctx context.Context, recs []*kgo.Record) error {
		for _, r := range recs {
			if isSpooled(r) {
				select { // the drain waits until released
				case <-release:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if isEvent(r, "FULLX", 0) {
				refused := false
				refuseFirst.Do(func() { refused = true })
				if refused {
					return errors.New("broker away") // X0 goes to the spool
				}
			}
		}
		return nil
	}
	srv := startServer(t, cfg)
	tmpl := fixtures(t)["incoming_event.agent_message.json"]
	post := func(chat string, seq int) response {
		return postWebhook(t, srv.url, eventBody(tmpl, chat, seq))
	}
	acked := map[string]int{}
	if r := post("FULLX", 0); r.status != 200 || srv.Stats().Counters.Spooled != 1 {
		t.Fatalf("X0: %d %s, spooled %d", r.status, r.body, srv.Stats().Counters.Spooled)
	}
	acked["FULLX"] = 1
	// While the spool holds anything, webhooks go behind it: fill it.
	z := 0
	for ; ; z++ {
		r := post("FULLZ", z)
		if r.status == 503 {
			break
		}
		if r.status != 200 || z > 50 {
			t.Fatalf("Z%d: %d %s", z, r.status, r.body)
		}
	}
	acked["FULLZ"] = z
	if r := post("FULLX", 1); r.status != 503 {
		t.Fatalf("X1 with X0 in a full spool: %d %s (would overtake X0)", r.status, r.body)
	}
	if r := post("FULLY", 0); r.status != 200 {
		t.Fatalf("Y0 (nothing of Y spooled) with a full spool: %d %s", r.status, r.body)
	}
	acked["FULLY"] = 1
	close(release)
	testenv.Eventually(t, 20*time.Second, func() error {
		if !srv.spool.Empty() {
			return fmt.Errorf("spool holds %d", srv.spool.Pending())
		}
		return nil
	})
	if r := post("FULLX", 1); r.status != 200 {
		t.Fatalf("X1 after the drain: %d %s", r.status, r.body)
	}
	acked["FULLX"] = 2
	recs := consume(t, kcfg, kcfg.RawTopic, 1+z+1+1, time.Second)
	checkDelivered(t, recs, acked)
	if n := srv.order.len(); n != 0 {
		t.Fatalf("%d keys still tracked", n)
	}
}
