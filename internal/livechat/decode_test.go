package livechat

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	stdjson "encoding/json"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.decoded.json")

// goldenView is what a golden file records: the typed value with its Go type.
type goldenView struct {
	Type     string    `json:"type"`
	Envelope *Envelope `json:"envelope"`
	Body     any       `json:"body"`
}

func TestDecodeGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in testdata: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			w := decodeFile(t, f)
			got := checkGolden(t, w, filepath.Join("testdata", "golden", name+".decoded.json"))
			if bytes.Contains(got, []byte("test-secret")) {
				t.Fatalf("decoded value carries the secret_key")
			}
		})
	}
}

// decodeFile decodes a fixture and fails on errors and *Unknown bodies.
func decodeFile(t *testing.T, path string) *Webhook {
	t.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := Decode(body)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if _, unknown := w.Body.(*Unknown); unknown {
		t.Fatalf("fixture action %q decoded as Unknown", w.Action)
	}
	return w
}

// checkGolden compares the decoded value, as indented JSON with its Go
// type, with the golden file (rewritten first with -update) and returns it.
func checkGolden(t *testing.T, w *Webhook, golden string) []byte {
	t.Helper()
	env := w.Envelope
	env.Payload = nil // the body is in Body; keep the golden readable
	got, err := stdjson.MarshalIndent(goldenView{Type: fmt.Sprintf("%T", w.Body), Envelope: &env, Body: w.Body}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("decoded value differs from %s (go test -update to accept):\n%s", golden, got)
	}
	return got
}

func TestActionsCoverV36(t *testing.T) {
	v36 := v36Actions
	if len(v36) != V36Actions {
		t.Fatalf("list has %d actions, want %d", len(v36), V36Actions)
	}
	types := map[string]string{}
	for _, a := range v36 {
		if !Known(a) {
			t.Errorf("action %s has no payload type", a)
			continue
		}
		v, err := actions[a].decode([]byte("{}"))
		if a == "auto_accesses_updated" {
			v, err = actions[a].decode([]byte("[]"))
		}
		if err != nil {
			t.Errorf("%s: decode {}: %v", a, err)
			continue
		}
		tn := fmt.Sprintf("%T", v)
		if prev, dup := types[tn]; dup {
			t.Errorf("%s and %s share payload type %s", prev, a, tn)
		}
		types[tn] = a
	}
}

func TestDecodeCases(t *testing.T) {
	const org = `"organization_id":"o1"`
	tests := []struct {
		name      string
		body      string
		wantErr   error  // errors.Is target; nil = success
		stage     string // DecodeError stage when failing
		wantType  string
		canonical string
	}{
		{"not json", `{"action":`, nil, "envelope", "", ""},
		{"array body", `[1,2]`, nil, "envelope", "", ""},
		{"no action", `{` + org + `,"payload":{}}`, ErrNoAction, "envelope", "", ""},
		{"no tenant", `{"action":"thread_tagged","payload":{}}`, ErrNoTenant, "envelope", "", ""},
		{"wrong payload type", `{"action":"thread_tagged",` + org + `,"payload":{"tag":5}}`, nil, "payload", "", ""},
		{"unknown action kept", `{"action":"brand_new_thing",` + org + `,"payload":{"x":1}}`, nil, "", "*livechat.Unknown", "brand_new_thing"},
		{"legacy name", `{"action":"thread_closed",` + org + `,"payload":{"chat_id":"C","thread_id":"T"}}`, nil, "", "*livechat.ChatDeactivated", "chat_deactivated"},
		{"v3.3 license", `{"action":"chat_access_granted","license_id":104130623,"payload":{"id":"C","access":{"group_ids":[1]}}}`, nil, "", "*livechat.ChatAccessGranted", "chat_access_granted"},
		{"v3.1 data", `{"action":"thread_tagged",` + org + `,"data":{"chat_id":"C","thread_id":"T","tag":"x"}}`, nil, "", "*livechat.ThreadTagged", "thread_tagged"},
		{"incoming_customer flat", `{"action":"incoming_customer",` + org + `,"payload":{"id":"cust-1","name":"A"}}`, nil, "", "*livechat.IncomingCustomer", "incoming_customer"},
		{"incoming_customer no id", `{"action":"incoming_customer",` + org + `,"payload":{"name":"A"}}`, nil, "payload", "", ""},
		{"bad time", `{"action":"incoming_event",` + org + `,"payload":{"chat_id":"C","thread_id":"T","event":{"id":"E","created_at":"yesterday"}}}`, nil, "payload", "", ""},
		{"empty time ok", `{"action":"incoming_event",` + org + `,"payload":{"chat_id":"C","thread_id":"T","event":{"id":"E","created_at":""}}}`, nil, "", "*livechat.IncomingEvent", "incoming_event"},
		{"null payload", `{"action":"chat_deactivated",` + org + `,"payload":null}`, nil, "", "*livechat.ChatDeactivated", "chat_deactivated"},
		{"auto accesses array", `{"action":"auto_accesses_updated",` + org + `,"payload":[{"id":"r1","status":"deleted"}]}`, nil, "", "*livechat.AutoAccessesUpdated", "auto_accesses_updated"},
		// Regressions: v3.3 agent_deleted named the agent payload.agent_id
		// (decoded to an empty ID before), v3.4 work_scheduler was keyed by
		// day (decoded to an empty schedule before).
		{"v3.3 agent_deleted agent_id", `{"action":"agent_deleted","license_id":1,"payload":{"agent_id":"a@example.com"}}`, nil, "", "*livechat.AgentDeleted", "agent_deleted"},
		{"v3.4 work_scheduler by day", `{"action":"agent_updated",` + org + `,"payload":{"id":"a@example.com","work_scheduler":{"monday":{"start":"08:30","end":"12:30"}}}}`, nil, "", "*livechat.AgentUpdated", "agent_updated"},
		{"work_scheduler day not object", `{"action":"agent_updated",` + org + `,"payload":{"id":"a@example.com","work_scheduler":{"monday":"08:30"}}}`, nil, "payload", "", ""},
		{"active_chat array of one", `{"action":"customer_session_fields_updated",` + org + `,"payload":{"id":"c","active_chat":[{"chat_id":"C","thread_id":"T"}]}}`, nil, "", "*livechat.CustomerSessionFieldsUpdated", "customer_session_fields_updated"},
		{"active_chat array of two", `{"action":"customer_session_fields_updated",` + org + `,"payload":{"id":"c","active_chat":[{"chat_id":"C","thread_id":"T"},{"chat_id":"D","thread_id":"U"}]}}`, nil, "payload", "", ""},
		{"restricted_access bool", `{"action":"incoming_chat",` + org + `,"payload":{"chat":{"id":"C","thread":{"id":"T","restricted_access":true}}}}`, nil, "", "*livechat.IncomingChat", "incoming_chat"},
		{"auto access wrong groups type", `{"action":"auto_accesses_updated",` + org + `,"payload":[{"id":"r1","access":{"groups":"all"}}]}`, nil, "payload", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Decode([]byte(tt.body))
			if tt.stage != "" {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("want *DecodeError, got %v", err)
				}
				if de.Stage != tt.stage {
					t.Fatalf("stage %q, want %q (%v)", de.Stage, tt.stage, err)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v is not %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got := fmt.Sprintf("%T", w.Body); got != tt.wantType {
				t.Fatalf("type %s, want %s", got, tt.wantType)
			}
			if w.Canonical != tt.canonical {
				t.Fatalf("canonical %q, want %q", w.Canonical, tt.canonical)
			}
		})
	}
}

func TestDecodeRegressionValues(t *testing.T) {
	w, err := Decode([]byte(`{"action":"agent_deleted","license_id":1,"payload":{"agent_id":"a@example.com"}}`))
	if err != nil || w.Body.(*AgentDeleted).ID != "a@example.com" {
		t.Fatalf("v3.3 agent_deleted: %+v, %v", w, err)
	}
	w, err = Decode([]byte(`{"action":"agent_deleted","organization_id":"o","payload":{"id":"b@example.com","agent_id":"a@example.com"}}`))
	if err != nil || w.Body.(*AgentDeleted).ID != "b@example.com" {
		t.Fatalf("id wins over agent_id: %+v, %v", w, err)
	}
	w, err = Decode([]byte(`{"action":"bot_created","organization_id":"o","payload":{"id":"b","work_scheduler":{"sunday":{"start":"10:00","end":"14:00","enabled":false},"monday":{"start":"08:00","end":"16:00"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &WorkScheduler{Schedule: []ScheduleItem{{Day: "monday", Enabled: true, Start: "08:00", End: "16:00"}, {Day: "sunday", Start: "10:00", End: "14:00"}}}
	if got := w.Body.(*BotCreated).WorkScheduler; !reflect.DeepEqual(got, want) {
		t.Fatalf("day-keyed work_scheduler = %+v, want %+v", got, want)
	}
	w, err = Decode([]byte(`{"action":"agent_updated","organization_id":"o","payload":{"id":"a","work_scheduler":{}}}`))
	if err != nil || !reflect.DeepEqual(w.Body.(*AgentUpdated).WorkScheduler, &WorkScheduler{}) || !reflect.DeepEqual(w.Body.(*AgentUpdated).Changed, []string{"work_scheduler"}) {
		t.Fatalf("empty work_scheduler: %+v, %v", w.Body, err)
	}
}

func TestRoutingStatusSpellings(t *testing.T) {
	for in, want := range map[string]string{
		"accepting chats": "accepting_chats", "not accepting chats": "not_accepting_chats",
		"not_accepting_chats": "not_accepting_chats", "offline": "offline",
	} {
		r := RoutingStatusSet{Status: in}
		if got := r.NormalizedStatus(); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}

func TestPropertiesAccessors(t *testing.T) {
	w, err := Decode([]byte(`{"action":"thread_properties_updated","organization_id":"o","payload":{"chat_id":"C","thread_id":"T","properties":{"rating":{"score":0,"comment":"meh"},"routing":{"continuous":"true","start_url":"https://x"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	p := w.Body.(*ThreadPropertiesUpdated).Properties
	if n, ok := p.Int("rating", "score"); !ok || n != 0 {
		t.Fatalf("score = %d,%v", n, ok)
	}
	if p.String("rating", "comment") != "meh" || !p.Bool("routing", "continuous") || p.String("routing", "start_url") != "https://x" {
		t.Fatalf("accessors: %+v", p)
	}
	if _, ok := p.Int("rating", "missing"); ok {
		t.Fatal("missing property reported present")
	}
}

func BenchmarkDecode(b *testing.B) {
	files, _ := filepath.Glob("testdata/*.json")
	var bodies [][]byte
	size := 0
	for _, f := range files {
		body, _ := os.ReadFile(f)
		bodies = append(bodies, body)
		size += len(body)
	}
	b.SetBytes(int64(size / len(bodies)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := Decode(bodies[i%len(bodies)]); err != nil {
			b.Fatal(err)
		}
	}
}

func TestTimeUnmarshal(t *testing.T) {
	for _, c := range []struct {
		in, want string // want "" = zero; "error" = an error
	}{
		{`"2025-03-14T10:00:00.123456Z"`, "2025-03-14T10:00:00.123456Z"},
		{`"2025-03-14T12:00:00.5+02:00"`, "2025-03-14T10:00:00.5Z"},
		{`"2025-03-14T10:00:00\u002e25Z"`, "2025-03-14T10:00:00.25Z"}, // escaped: the slow path
		{`null`, ""},
		{`""`, ""},
		{`"yesterday"`, "error"},
		{`12`, "error"},
	} {
		var tm Time
		err := tm.UnmarshalJSON([]byte(c.in))
		switch {
		case c.want == "error":
			if err == nil {
				t.Errorf("%s: no error", c.in)
			}
		case err != nil:
			t.Errorf("%s: %v", c.in, err)
		case c.want == "" && !tm.IsZero():
			t.Errorf("%s: %v, want zero", c.in, tm.Time)
		case c.want != "" && tm.Format(time.RFC3339Nano) != c.want:
			t.Errorf("%s: %s, want %s", c.in, tm.Format(time.RFC3339Nano), c.want)
		}
	}
	// A failed parse's error must not alias the input, which the caller
	// may reuse.
	in := []byte(`"not a time"`)
	var tm Time
	err := tm.UnmarshalJSON(in)
	copy(in, `"XXXXXXXXXX"`)
	if err == nil || !strings.Contains(err.Error(), "not a time") {
		t.Errorf("error %v lost its input", err)
	}
}

// TestDecodeOwnsPayload: the payload Decode returns is its own, not a view
// of the body (ownedRaw relies on the decoder copying what it hands over).
func TestDecodeOwnsPayload(t *testing.T) {
	for _, field := range []string{"payload", "data"} {
		body := []byte(`{"action":"incoming_event","organization_id":"o","` + field + `":{"chat_id":"C1","event":{"id":"E1","type":"message","text":"hi"}},"additional_data":{}}`)
		w, err := Decode(body)
		if err != nil {
			t.Fatal(err)
		}
		want := string(w.Payload)
		for i := range body {
			body[i] = 'x'
		}
		if string(w.Payload) != want || !strings.Contains(want, `"chat_id":"C1"`) {
			t.Fatalf("%s: payload %q changed with the body (was %q)", field, w.Payload, want)
		}
	}
}
