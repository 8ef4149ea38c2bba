package processor

import (
	"bytes"
	stdjson "encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/livechat"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.rows.json")

// fixtures are the shared LiveChat fixtures (copied into the livechat
// package's testdata).
const fixtureDir = "../internal/livechat/testdata"

type fakeDirectory struct{}

func (fakeDirectory) AgentName(org, id string) string {
	if id == "tom.baker@example.com" {
		return "Tom Baker"
	}
	if id == "panic@example.com" {
		panic("directory bug")
	}
	return ""
}

func (fakeDirectory) GroupName(org string, id uint32) string {
	return map[uint32]string{0: "General", 2: "Billing"}[id]
}

var goldenSource = Source{
	Topic: "livechat.webhooks.raw", Partition: 1, Offset: 42,
	ReceivedAt: time.Date(2025, 3, 14, 9, 30, 0, 123e6, time.UTC),
	RequestID:  "req-1", BodySHA256: "0000", IngestVersion: "test",
}

func decodeFixture(t testing.TB, name string) *livechat.Webhook {
	t.Helper()
	body, err := os.ReadFile(filepath.Join(fixtureDir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := livechat.Decode(body)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return w
}

func fixtureNames(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in %s", fixtureDir)
	}
	var out []string
	for _, f := range files {
		out = append(out, strings.TrimSuffix(filepath.Base(f), ".json"))
	}
	return out
}

func TestTransformGolden(t *testing.T) {
	for _, name := range fixtureNames(t) {
		t.Run(name, func(t *testing.T) {
			w := decodeFixture(t, name)
			rows := Transform(goldenSource, w, NewUserCache(10), fakeDirectory{})
			if len(rows) == 0 {
				t.Fatal("no rows")
			}
			for _, r := range rows {
				if r.EventID == "" || len(r.EventID) != 32 || r.Kind == "" || r.OrganizationID == "" {
					t.Fatalf("row without identity: %+v", r)
				}
				if strings.Contains(r.Payload, "test-secret") {
					t.Fatal("payload column carries the secret")
				}
			}
			got, err := stdjson.MarshalIndent(rows, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", "golden", name+".rows.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("rows differ from %s (go test -update to accept):\n%s", golden, got)
			}
		})
	}
}

func TestIncomingChatEventsShareIncomingEventIDs(t *testing.T) {
	chat := Transform(goldenSource, decodeFixture(t, "incoming_chat"), nil, nil)
	if len(chat) != 4 || chat[0].Kind != KindThreadStarted {
		t.Fatalf("incoming_chat rows: %d, first kind %q", len(chat), chat[0].Kind)
	}
	// The same event delivered by incoming_event gets the same ID.
	w := decodeFixture(t, "incoming_event")
	ie := w.Body.(*livechat.IncomingEvent)
	ie.Event = w.Body.(*livechat.IncomingEvent).Event
	ie.Event.ID = "RW4T8ZQK3D_3"
	later := goldenSource
	later.ReceivedAt = later.ReceivedAt.Add(time.Hour)
	ev := Transform(later, w, nil, nil)
	if ev[0].EventID != chat[3].EventID {
		t.Fatalf("incoming_event id %s != incoming_chat event id %s", ev[0].EventID, chat[3].EventID)
	}
	for i, r := range chat {
		if int(r.SrcIndex) != i {
			t.Fatalf("src_index %d at %d", r.SrcIndex, i)
		}
	}
}

func TestAuthorTypes(t *testing.T) {
	users := NewUserCache(10)
	Transform(goldenSource, decodeFixture(t, "incoming_chat"), users, nil)
	Transform(goldenSource, decodeFixture(t, "user_added_to_chat"), users, nil)
	tests := []struct {
		name, fixture, wantType, wantAgent, wantCustomer string
	}{
		{"customer message (cached)", "incoming_event", "customer", "", "b2f6d8a4-3c1e-4f5a-9b7d-6e8c0a2f4d1b"},
		{"agent message (cached)", "incoming_event.agent_message", "agent", "anna.kowalski@example.com", ""},
		{"postback by customer", "incoming_rich_message_postback", "customer", "", "b2f6d8a4-3c1e-4f5a-9b7d-6e8c0a2f4d1b"},
		{"closed by added agent", "chat_deactivated", "agent", "tom.baker@example.com", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Transform(goldenSource, decodeFixture(t, tt.fixture), users, nil)[0]
			if r.AuthorType != tt.wantType || r.AgentID != tt.wantAgent || r.CustomerID != tt.wantCustomer {
				t.Fatalf("author_type %q agent %q customer %q", r.AuthorType, r.AgentID, r.CustomerID)
			}
		})
	}
	for id, want := range map[string]string{
		"a@b.c": "agent", "0123456789abcdef0123456789abcdef": "bot",
		"b2f6d8a4-3c1e-4f5a-9b7d-6e8c0a2f4d1b": "customer", "weird": "", "": "",
	} {
		if got := ShapeType(id); got != want {
			t.Errorf("ShapeType(%q) = %q, want %q", id, got, want)
		}
	}
	// A learnt agent with a bot-shaped id is a bot; no author is system.
	users.learn("o", "c", "0123456789abcdef0123456789abcdef", "agent")
	if got := users.authorType("o", "c", "0123456789abcdef0123456789abcdef"); got != "bot" {
		t.Fatalf("bot: %q", got)
	}
	if got := users.authorType("o", "c", ""); got != "system" {
		t.Fatalf("no author: %q", got)
	}
}

func TestWindowedIdentity(t *testing.T) {
	mk := func(payload string, recv time.Time, extra string) Row {
		body := `{"action":"thread_tagged","organization_id":"o1","payload":` + payload + `,"additional_data":` + extra + `}`
		w, err := livechat.Decode([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		src := goldenSource
		src.ReceivedAt = recv
		return Transform(src, w, nil, nil)[0]
	}
	t0 := goldenSource.ReceivedAt
	a := mk(`{"chat_id":"C","thread_id":"T","tag":"x"}`, t0, `{}`)
	b := mk(`{ "tag": "x", "thread_id":"T", "chat_id":"C" }`, t0, `{"chat_presence_user_ids":["u"]}`)
	c := mk(`{"chat_id":"C","thread_id":"T","tag":"x"}`, t0.Add(time.Minute), `{}`)
	d := mk(`{"chat_id":"C","thread_id":"T","tag":"y"}`, t0, `{}`)
	if a.DedupKey == "" || a.DedupKey != b.DedupKey || a.EventID != b.EventID {
		t.Fatalf("same content (key order, whitespace, additional_data) must give one key and id: %s/%s %s/%s", a.DedupKey, b.DedupKey, a.EventID, b.EventID)
	}
	if c.DedupKey != a.DedupKey || c.EventID == a.EventID {
		t.Fatal("a later repeat keeps the key and gets another id")
	}
	if d.DedupKey == a.DedupKey {
		t.Fatal("different content, same key")
	}
	if a.OccurredAtMs != a.ReceivedAtMs {
		t.Fatal("windowed rows occur when received")
	}
	if len(a.DedupSubjects) != 1 || a.DedupSubjects[0] != d.DedupSubjects[0] && false {
		t.Fatalf("subjects %v", a.DedupSubjects)
	}
	if a.DedupSubjects[0] == d.DedupSubjects[0] {
		t.Fatal("tags x and y of one thread are two subjects")
	}
}

func TestDirectoryPanicMeansNoName(t *testing.T) {
	w, err := livechat.Decode([]byte(`{"action":"routing_status_set","organization_id":"o","payload":{"agent_id":"panic@example.com","status":"accepting chats"}}`))
	if err != nil {
		t.Fatal(err)
	}
	r := Transform(goldenSource, w, nil, fakeDirectory{})[0]
	if r.AgentName != "" || r.RoutingStatus != "accepting_chats" || r.AgentID != "panic@example.com" {
		t.Fatalf("%+v", r)
	}
}

func TestIDCacheBounded(t *testing.T) {
	c := newIDCache(4)
	for i := 0; i < 20; i++ {
		c.add(hashParts(string(rune('a' + i))))
	}
	if c.len() > 8 {
		t.Fatalf("cache holds %d", c.len())
	}
	if !c.has(hashParts(string(rune('a' + 19)))) {
		t.Fatal("latest id forgotten")
	}
}

func BenchmarkDecodeTransform(b *testing.B) {
	var bodies [][]byte
	for _, n := range fixtureNames(b) {
		body, _ := os.ReadFile(filepath.Join(fixtureDir, n+".json"))
		bodies = append(bodies, body)
	}
	users := NewUserCache(1000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		w, err := livechat.Decode(bodies[i%len(bodies)])
		if err != nil {
			b.Fatal(err)
		}
		Transform(goldenSource, w, users, nil)
	}
}

func TestCanonicalJSON(t *testing.T) {
	got := string(canonicalJSON([]byte(` { "b": [ {"z":1,"a":2} ], "a": 12345678901234567890, "c": "x y" }`)))
	want := `{"a":12345678901234567890,"b":[{"a":2,"z":1}],"c":"x y"}`
	if got != want {
		t.Fatalf("got %s want %s", got, want)
	}
}

func TestLookupRanges(t *testing.T) {
	var o occRanges
	if cond, args := o.where(); cond != "1" || args != nil {
		t.Fatalf("empty: %s %v", cond, args)
	}
	o.add(&Row{OccurredAtMs: 5_000_500, ownTime: true})
	o.add(&Row{OccurredAtMs: 9_000_000, ownTime: true})
	cond, args := o.where()
	if strings.Count(cond, "occurred_at >=") != 1 || args[0] != uint64(5000) || args[1] != uint64(9001) {
		t.Fatalf("own times are looked up exactly: %s %v", cond, args)
	}
	o.add(&Row{OccurredAtMs: 100_000_000_000})
	cond, args = o.where()
	day := uint64(lookupMargin / time.Second)
	if strings.Count(cond, " OR ") != 1 || args[2] != uint64(100_000_000)-day || args[3] != uint64(100_000_000)+day+1 {
		t.Fatalf("received-at rows are widened by the margin: %s %v", cond, args)
	}
	// The golden fixtures classify: events carry their own time, closes do not.
	if rows := Transform(goldenSource, decodeFixture(t, "incoming_event"), nil, nil); !rows[0].ownTime {
		t.Fatal("event rows have their own time")
	}
	if rows := Transform(goldenSource, decodeFixture(t, "chat_deactivated"), nil, nil); rows[0].ownTime {
		t.Fatal("chat_deactivated has no time of its own")
	}
}

// TestOwnTimeOutOfRange: a payload time ClickHouse's DateTime cannot hold
// (year 2200, 1960) is not the event's time: the row keeps its received-at
// instead of wrapping around when stored.
func TestOwnTimeOutOfRange(t *testing.T) {
	for _, at := range []string{"2200-01-01T00:00:00.000000Z", "1960-01-01T00:00:00.000000Z", "2025-03-14T09:00:00.000000Z"} {
		body := `{"action":"incoming_event","organization_id":"o","payload":{"chat_id":"C","thread_id":"T","event":{"id":"E","type":"message","text":"x","author_id":"a@x","created_at":"` + at + `"}}}`
		w, err := livechat.Decode([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		r := Transform(goldenSource, w, nil, nil)[0]
		inRange := strings.HasPrefix(at, "2025")
		if got := r.OccurredAtMs != r.ReceivedAtMs; got != inRange {
			t.Errorf("%s: occurred %d, received %d", at, r.OccurredAtMs, r.ReceivedAtMs)
		}
	}
}
