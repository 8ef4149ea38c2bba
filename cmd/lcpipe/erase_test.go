package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/schema"
)

// eraseEnv is a migrated database holding two customers' chats of one
// organization (a thread each: incoming_chat and a customer message), in
// January and in the current month.
func eraseEnv(t *testing.T) *opsEnv {
	t.Helper()
	e := &opsEnv{chcfg: testenv.ClickHouseConfig(t)}
	e.conn = testenv.ClickHouse(t, e.chcfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := schema.Migrate(ctx, e.conn, schema.Options{Database: e.chcfg.Database}, nil); err != nil {
		t.Fatal(err)
	}
	b, err := e.conn.PrepareBatch(ctx, "INSERT INTO "+e.chcfg.Database+".events (event_id, organization_id, action, kind, occurred_at, occurred_at_ms, received_at, received_at_ms, chat_id, thread_id, event_ref, event_type, author_id, customer_id, thread_created_at_ms)")
	if err != nil {
		t.Fatal(err)
	}
	for i, at := range []time.Time{time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC), time.Now().UTC().Truncate(time.Second)} {
		cust, chat, th := fmt.Sprintf("customer-%d-uuid", i), fmt.Sprintf("CHAT%d", i), fmt.Sprintf("THREAD%d", i)
		ms := uint64(at.UnixMilli())
		_ = b.Append("s"+th, "org", "incoming_chat", "thread_started", at, ms, at, ms, chat, th, "", "", "", cust, ms)
		_ = b.Append("m"+th, "org", "incoming_event", "event", at, ms, at, ms, chat, th, "E"+th, "message", cust, "", uint64(0))
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	e.env = map[string]string{
		"CLICKHOUSE_ADDR":     strings.Join(e.chcfg.Addr, ","),
		"CLICKHOUSE_DATABASE": e.chcfg.Database,
		"KAFKA_RAW_TOPIC":     "erase-test-raw",
		"LOG_LEVEL":           "warn",
	}
	return e
}

// TestEraseCommand runs `lcpipe erase` as an operator would: a missing
// organization is refused, --dry-run --json reports and deletes nothing,
// the erase prints its table and the Kafka retention note and leaves
// nothing of the customer.
func TestEraseCommand(t *testing.T) {
	e := eraseEnv(t)
	db := e.chcfg.Database
	if r := e.run(t, nil, "erase", "--customer", "customer-0-uuid"); r.code != 1 || !strings.Contains(r.stderr, "organization is required") {
		t.Fatalf("erase without --organization: exit %d, stderr %s", r.code, r.stderr)
	}
	if r := e.run(t, nil, "erase", "--organization", "org", "--customer", "c", "--chat", "x"); r.code != 1 || !strings.Contains(r.stderr, "not both") {
		t.Fatalf("erase with --customer and --chat: exit %d, stderr %s", r.code, r.stderr)
	}
	r := e.mustRun(t, nil, "erase", "--organization", "org", "--customer", "customer-0-uuid", "--dry-run", "--json")
	var rep struct {
		DryRun bool `json:"dry_run"`
		Chats  int  `json:"chats"`
		Tables []struct {
			Table     string `json:"table"`
			Matched   uint64 `json:"matched"`
			Remaining uint64 `json:"remaining"`
		} `json:"tables"`
		Kept  []struct{ Table, Reason string } `json:"kept"`
		Kafka struct {
			RawTopic string `json:"raw_topic"`
			Note     string `json:"note"`
		} `json:"kafka"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	matched := map[string]uint64{}
	for _, tb := range rep.Tables {
		matched[tb.Table] = tb.Matched
	}
	if !rep.DryRun || rep.Chats != 1 || matched["events"] != 2 || matched["messages"] != 1 || matched["thread_state"] != 1 || len(rep.Kept) == 0 {
		t.Fatalf("dry run report: %s", r.stdout)
	}
	if rep.Kafka.RawTopic != "erase-test-raw" || !strings.Contains(rep.Kafka.Note, "erase-test-raw") || !strings.Contains(rep.Kafka.Note, "14 days") {
		t.Fatalf("dry run: no Kafka retention note: %+v", rep.Kafka)
	}
	if n := e.count(t, "SELECT count() FROM "+db+".events WHERE chat_id = 'CHAT0'"); n != 2 {
		t.Fatalf("the dry run deleted rows: %d left of 2", n)
	}
	r = e.mustRun(t, map[string]string{"KAFKA_RAW_RETENTION": "72h"}, "erase", "--organization", "org", "--customer", "customer-0-uuid")
	for _, want := range []string{"erased customer customer-0-uuid of organization org (1 chat(s), 1 thread(s))", "TABLE", "events", "total",
		"webhook_minutes", "no personal data", "Kafka keeps the raw webhooks in erase-test-raw for its retention (3 days"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("erase output lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, q := range []string{
		"SELECT count() FROM " + db + ".events WHERE chat_id = 'CHAT0' OR customer_id = 'customer-0-uuid' OR author_id = 'customer-0-uuid'",
		"SELECT count() FROM " + db + ".messages WHERE chat_id = 'CHAT0'",
		"SELECT count() FROM " + db + ".thread_state WHERE thread_id = 'THREAD0'",
	} {
		if n := e.count(t, q); n != 0 {
			t.Fatalf("%s: %d rows after the erase", q, n)
		}
	}
	if n := e.count(t, "SELECT count() FROM "+db+".events WHERE chat_id = 'CHAT1'"); n != 2 {
		t.Fatalf("the other customer's rows: %d, want 2", n)
	}
}

// TestRetentionCommand: `lcpipe retention` refuses to run without
// RETENTION_DAYS, and with it shows (--dry-run) the month it would drop.
func TestRetentionCommand(t *testing.T) {
	e := eraseEnv(t)
	if r := e.run(t, nil, "retention"); r.code != 1 || !strings.Contains(r.stderr, "RETENTION_DAYS") {
		t.Fatalf("retention without RETENTION_DAYS: exit %d, stderr %s", r.code, r.stderr)
	}
	if r := e.run(t, map[string]string{"RETENTION_DAYS": "-3"}, "retention"); r.code != 1 || !strings.Contains(r.stderr, "RETENTION_DAYS") {
		t.Fatalf("negative RETENTION_DAYS: exit %d, stderr %s", r.code, r.stderr)
	}
	r := e.mustRun(t, map[string]string{"RETENTION_DAYS": "90"}, "retention", "--dry-run", "--json")
	var st struct {
		DryRun  bool `json:"dry_run"`
		Dropped []struct {
			Table, Partition string
			Rows             uint64
		} `json:"dropped"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	found := false
	for _, d := range st.Dropped {
		found = found || d.Table == "events" && d.Partition == "202501" && d.Rows == 2
	}
	if !st.DryRun || !found {
		t.Fatalf("dry run should list events 202501 (2 rows): %s", r.stdout)
	}
	if n := e.count(t, "SELECT count() FROM "+e.chcfg.Database+".events"); n != 4 {
		t.Fatalf("the dry run dropped rows: %d left of 4", n)
	}
	r = e.mustRun(t, map[string]string{"RETENTION_DAYS": "90"}, "retention")
	if !strings.Contains(r.stdout, "dropped") || !strings.Contains(r.stdout, "202501") {
		t.Fatalf("retention output:\n%s", r.stdout)
	}
	if n := e.count(t, "SELECT count() FROM "+e.chcfg.Database+".events"); n != 2 {
		t.Fatalf("after retention: %d events, want the 2 of this month", n)
	}
}
