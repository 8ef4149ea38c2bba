package processor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/livechat"
)

// memProcessor decides state changes from memory alone: every subject's
// entry is complete for all time, so no lookup reaches ClickHouse.
type memProcessor struct{ d *deduper }

func newMemProcessor() *memProcessor {
	cfg := Config{DedupWindow: 2 * time.Minute, IDCacheSize: 1000, WindowCacheSize: 1000}
	return &memProcessor{d: newDeduper(cfg, "raw", nil, nil)}
}

// step is one record in the log: its body and when ingest received it
// (seconds after t0). Its offset is its place in the list unless off is set.
type step struct {
	body string
	at   float64
	off  int64
}

var t0 = time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

// run feeds the steps in log order (one record per batch, like a slow
// stream) and returns which were kept.
func (m *memProcessor) run(t *testing.T, steps []step) []bool {
	t.Helper()
	var kept []bool
	for i, s := range steps {
		w, err := livechat.Decode([]byte(s.body))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		off := int64(i)
		if s.off != 0 {
			off = s.off
		}
		src := Source{Topic: "raw", Partition: 0, Offset: off, ReceivedAt: t0.Add(time.Duration(s.at * float64(time.Second)))}
		rows := Transform(src, w, nil, nil)
		for _, r := range rows {
			for _, subj := range r.DedupSubjects {
				e := m.d.subjects.get(subj)
				e.loaded, e.lo, e.hi = true, 0, ^uint64(0)
			}
		}
		res, err := m.d.dedup(context.Background(), rows)
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, len(res.keep) > 0)
	}
	return kept
}

func env36(action, payload string) string {
	return `{"action":"` + action + `","organization_id":"o1","secret_key":"","payload":` + payload + `,"additional_data":{}}`
}

func status(s string) string {
	return env36("routing_status_set", `{"agent_id":"a@example.com","status":"`+s+`"}`)
}

func tag(action, tag string) string {
	return env36(action, `{"chat_id":"C","thread_id":"T","tag":"`+tag+`"}`)
}

func rating(score int, comment string) string {
	props := fmt.Sprintf(`{"score":%d}`, score)
	if comment != "" {
		props = fmt.Sprintf(`{"score":%d,"comment":%q}`, score, comment)
	}
	return env36("thread_properties_updated", `{"chat_id":"C","thread_id":"T","properties":{"rating":`+props+`}}`)
}

func member(action string) string {
	if action == "user_added_to_chat" {
		return env36(action, `{"chat_id":"C","thread_id":"T","user":{"id":"a@example.com","type":"agent"},"user_type":"agent","reason":"manual","requester_id":"b@example.com"}`)
	}
	return env36(action, `{"chat_id":"C","thread_id":"T","user_id":"a@example.com","user_type":"agent","reason":"manual","requester_id":"b@example.com"}`)
}

func postback(on bool) string {
	return env36("incoming_rich_message_postback", fmt.Sprintf(`{"chat_id":"C","thread_id":"T","event_id":"E","user_id":"u1","postback":{"id":"p1","toggled":%v}}`, on))
}

func edited(text string) string {
	return env36("event_updated", `{"chat_id":"C","thread_id":"T","event":{"id":"E","type":"message","text":"`+text+`","author_id":"u1","created_at":"2025-03-14T08:59:00.000000Z"}}`)
}

// TestStateChangeRetries: a state that flips back is a new event; the same
// body again with nothing different in between, inside the retry horizon,
// is a retry; the decision depends on the log alone.
func TestStateChangeRetries(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		want  []bool
	}{
		{"status flips back", []step{{body: status("accepting chats")}, {body: status("not accepting chats"), at: 1}, {body: status("accepting chats"), at: 2}},
			[]bool{true, true, true}},
		{"status retried", []step{{body: status("accepting chats")}, {body: status("accepting chats"), at: 12}, {body: status("accepting chats"), at: 50}},
			[]bool{true, false, false}},
		{"status again after the horizon", []step{{body: status("accepting chats")}, {body: status("accepting chats"), at: 121}},
			[]bool{true, true}},
		{"tag, untag, re-tag", []step{{body: tag("thread_tagged", "x")}, {body: tag("thread_untagged", "x"), at: 1}, {body: tag("thread_tagged", "x"), at: 2}},
			[]bool{true, true, true}},
		{"tag retried, other tag between", []step{{body: tag("thread_tagged", "x")}, {body: tag("thread_tagged", "y"), at: 1}, {body: tag("thread_tagged", "x"), at: 11}},
			[]bool{true, true, false}},
		{"rating 1, 0, 1", []step{{body: rating(1, "")}, {body: rating(0, ""), at: 1}, {body: rating(1, ""), at: 2}},
			[]bool{true, true, true}},
		{"rating with comment, score alone, both again", []step{{body: rating(1, "great")}, {body: rating(0, ""), at: 1}, {body: rating(1, "great"), at: 2}},
			[]bool{true, true, true}},
		{"rating retried", []step{{body: rating(1, "great")}, {body: rating(1, "great"), at: 10}},
			[]bool{true, false}},
		{"agent added, removed, re-added", []step{{body: member("user_added_to_chat")}, {body: member("user_removed_from_chat"), at: 1}, {body: member("user_added_to_chat"), at: 2}},
			[]bool{true, true, true}},
		{"postback on, off, on", []step{{body: postback(true)}, {body: postback(false), at: 1}, {body: postback(true), at: 2}},
			[]bool{true, true, true}},
		{"postback retried", []step{{body: postback(true)}, {body: postback(true), at: 10}},
			[]bool{true, false}},
		{"edited X, Y, X", []step{{body: edited("X")}, {body: edited("Y"), at: 1}, {body: edited("X"), at: 2}},
			[]bool{true, true, true}},
		// A first delivery that waited in ingest's spool reaches the log
		// after later changes: judged by what was received before it, it
		// is not taken for a retry of its own repeat.
		{"spooled first delivery", []step{{body: status("not accepting chats"), at: 1}, {body: status("accepting chats"), at: 2}, {body: status("accepting chats"), at: 0}},
			[]bool{true, true, true}},
		// The same record read again (a rewind, a replay) is stored, not new.
		{"record read again", []step{{body: status("accepting chats"), off: 7}, {body: status("accepting chats"), off: 7}},
			[]bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newMemProcessor().run(t, tt.steps)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("kept %v, want %v", got, tt.want)
			}
		})
	}
}

// TestStateChangeDecisionsAreReplayable: deciding the same log twice, the
// second time with every kept change already known (as after a replay),
// keeps nothing new and drops every record as stored or as a retry alike.
func TestStateChangeDecisionsAreReplayable(t *testing.T) {
	steps := []step{{body: status("accepting chats")}, {body: status("accepting chats"), at: 5}, {body: status("not accepting chats"), at: 6},
		{body: status("accepting chats"), at: 7}, {body: status("accepting chats"), at: 8}, {body: status("offline"), at: 300}}
	m := newMemProcessor()
	first := m.run(t, steps)
	if fmt.Sprint(first) != fmt.Sprint([]bool{true, false, true, true, false, true}) {
		t.Fatalf("first pass kept %v", first)
	}
	again := m.run(t, steps)
	for i, k := range again {
		if k {
			t.Fatalf("replay kept step %d again", i)
		}
	}
}

// TestRetryIsTheSameBody: a webhook that re-asserts one property's value
// beside another's (a different body) is not a retry, though no subject's
// state changes; the same body again is.
func TestRetryIsTheSameBody(t *testing.T) {
	got := newMemProcessor().run(t, []step{{body: rating(1, "great")}, {body: rating(1, ""), at: 5}, {body: rating(1, ""), at: 15}})
	if fmt.Sprint(got) != fmt.Sprint([]bool{true, true, false}) {
		t.Fatalf("kept %v", got)
	}
}
