package livechat

import (
	"bytes"
	stdjson "encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// v36Actions are the 38 webhook actions of v3.6 (webhooks.md §7).
var v36Actions = []string{"incoming_chat", "chat_deactivated", "chat_access_updated", "chat_transferred",
	"user_added_to_chat", "user_removed_from_chat", "incoming_event", "event_deleted", "event_updated",
	"incoming_rich_message_postback", "chat_properties_updated", "chat_properties_deleted",
	"thread_properties_updated", "thread_properties_deleted", "event_properties_updated",
	"event_properties_deleted", "thread_tagged", "thread_untagged", "routing_status_set",
	"customer_session_fields_updated", "agent_created", "agent_approved", "agent_updated",
	"agent_suspended", "agent_unsuspended", "agent_deleted", "auto_accesses_updated", "bot_created",
	"bot_updated", "bot_deleted", "group_created", "group_updated", "group_deleted", "tag_created",
	"tag_updated", "tag_deleted", "events_marked_as_seen", "thread_summary_set"}

// Identities of the fixtures under testdata/v3.*/ (see testdata/VERSIONS.md).
const (
	tOrg     = "3f2b8c1e-9d4a-4e6b-8f1a-2c5d7e9b0a14"
	tChat    = "RW4T8ZQK2C"
	tThread  = "RW4T8ZQK3D"
	tChat2   = "RX9M3H6V1P"
	tThread2 = "RX9M3H6V2Q"
	tCust    = "b2f6d8a4-3c1e-4f5a-9b7d-6e8c0a2f4d1b"
	tAnna    = "anna.kowalski@example.com"
	tTom     = "tom.baker@example.com"
	tLi      = "li.wei@example.com"
	tBot     = "8d3e5f7a9b1c2d4e6f8a0b1c3d5e7f9a"
	tAppNS   = "0805e283233042b37f460ed8fbf22160"
	tRuleA   = "a2710c4680fa15700ae046940a11a329"
	tRuleB   = "f65e41f43bbb2fefe3756698ba47caeb"
	tRuleC   = "1faad6f5f1d6e8fdf27e8af9839783b7"
)

var tRequester = &Requester{UserID: "admin.owner@example.com", AccountID: "e7c3a1f9-5b2d-4e8a-9c6f-0d1b3a5e7c92", ClientID: "9f1e2d3c4b5a69788796a5b4c3d2e1f0"}

// configAction reports the configuration webhooks, which carry requester (3.6+).
func configAction(a string) bool {
	for _, p := range []string{"agent_", "bot_", "group_", "tag_", "auto_access"} {
		if strings.HasPrefix(a, p) {
			return true
		}
	}
	return false
}

// TestGoldenV36 decodes one realistic body (at least) per v3.6 action and
// checks it twice: against its golden file (every field, regenerated with
// -update) and against hand-written assertions that a regenerated golden
// cannot silently change.
func TestGoldenV36(t *testing.T) {
	files, err := filepath.Glob("testdata/v3.6/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in testdata/v3.6: %v", err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		action, _, _ := strings.Cut(name, ".")
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			checkEnvelopeFile(t, f)
			w := decodeFile(t, f)
			if w.Action != action || w.Canonical != action {
				t.Fatalf("action %q canonical %q, want %q (file name says)", w.Action, w.Canonical, action)
			}
			if w.OrganizationID != tOrg || w.Tenant() != tOrg || w.LicenseID != 0 {
				t.Fatalf("tenant %q / license %d", w.OrganizationID, w.LicenseID)
			}
			if w.WebhookID == "" {
				t.Fatal("no webhook_id")
			}
			if configAction(action) {
				eq(t, "requester", w.Requester, tRequesterFor(name))
				if w.AdditionalData == nil || len(w.AdditionalData.ChatProperties) != 0 || len(w.AdditionalData.ChatPresenceUserIDs) != 0 {
					t.Errorf("configuration webhook additional_data = %+v, want {}", w.AdditionalData)
				}
			} else if w.Requester != nil {
				t.Errorf("chat webhook with requester %+v", w.Requester)
			}
			checkGolden(t, w, filepath.Join("testdata", "golden", "v3.6", name+".decoded.json"))
			check, ok := v36Checks[name]
			if !ok {
				t.Fatalf("no hand-written assertions for %s in v36Checks", name)
			}
			check(t, w)
		})
	}
	for _, a := range v36Actions {
		if !seen[a] {
			t.Errorf("no testdata/v3.6/%s.json", a)
		}
	}
	for name := range v36Checks {
		if !seen[name] {
			t.Errorf("v36Checks has %s but testdata/v3.6/%s.json is missing", name, name)
		}
	}
}

// TestGoldenLegacy does the same for the older action names and v3.2–v3.5
// payload shapes in testdata/v3.2 … v3.5.
func TestGoldenLegacy(t *testing.T) {
	files, err := filepath.Glob("testdata/v3.[2-5]/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in testdata/v3.2 … v3.5: %v", err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(filepath.Dir(f)) + "/" + strings.TrimSuffix(filepath.Base(f), ".json")
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			checkEnvelopeFile(t, f)
			w := decodeFile(t, f)
			if strings.HasPrefix(name, "v3.2/") || strings.HasPrefix(name, "v3.3/") {
				if w.OrganizationID != "" || w.Tenant() != "license:104130623" {
					t.Fatalf("v3.3 tenant = %q", w.Tenant())
				}
			} else if w.Tenant() != tOrg {
				t.Fatalf("tenant = %q", w.Tenant())
			}
			checkGolden(t, w, filepath.Join("testdata", "golden", name+".decoded.json"))
			check, ok := legacyChecks[name]
			if !ok {
				t.Fatalf("no hand-written assertions for %s in legacyChecks", name)
			}
			check(t, w)
		})
	}
	for name := range legacyChecks {
		if !seen[name] {
			t.Errorf("legacyChecks has %s but testdata/%s.json is missing", name, name)
		}
	}
}

// checkEnvelopeFile checks what the fixture itself promises: a complete
// delivery with a blank secret_key (as ingest stores it).
func checkEnvelopeFile(t *testing.T, path string) {
	t.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]stdjson.RawMessage
	if err := stdjson.Unmarshal(body, &env); err != nil {
		t.Fatalf("fixture is not a JSON object: %v", err)
	}
	for _, k := range []string{"webhook_id", "secret_key", "action", "payload", "additional_data"} {
		if _, ok := env[k]; !ok {
			t.Errorf("fixture has no %s", k)
		}
	}
	if string(env["secret_key"]) != `""` {
		t.Errorf("secret_key = %s, want blank", env["secret_key"])
	}
}

// tRequesterFor is the requester a configuration fixture carries (none
// before 3.6).
func tRequesterFor(name string) *Requester {
	if name == "agent_updated.work_scheduler" {
		return &Requester{UserID: tAnna, AccountID: "6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e", ClientID: tRequester.ClientID}
	}
	return tRequester
}

func as[T any](t *testing.T, w *Webhook) *T {
	t.Helper()
	v, ok := w.Body.(*T)
	if !ok {
		t.Fatalf("body is %T, want %T", w.Body, (*T)(nil))
	}
	return v
}

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

// ts formats a decoded time as LiveChat sends it.
func ts(tm Time) string {
	if tm.IsZero() {
		return ""
	}
	return tm.UTC().Format("2006-01-02T15:04:05.000000Z")
}

func propInt(t *testing.T, p Properties, ns, name string, want int64) {
	t.Helper()
	if n, ok := p.Int(ns, name); !ok || n != want {
		t.Errorf("property %s.%s = %d (present %v), want %d", ns, name, n, ok, want)
	}
}

func propString(t *testing.T, p Properties, ns, name, want string) {
	t.Helper()
	if got := p.String(ns, name); got != want {
		t.Errorf("property %s.%s = %q, want %q", ns, name, got, want)
	}
}

func propBool(t *testing.T, p Properties, ns, name string, want bool) {
	t.Helper()
	if !p.Has(ns, name) {
		t.Errorf("property %s.%s missing", ns, name)
	}
	if got := p.Bool(ns, name); got != want {
		t.Errorf("property %s.%s = %v, want %v", ns, name, got, want)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func checkMariaVisit(t *testing.T, v *Visit) {
	t.Helper()
	if v == nil {
		t.Fatal("customer visit missing")
	}
	eq(t, "visit.started_at", ts(v.StartedAt), "2025-03-14T09:12:40.771204Z")
	eq(t, "visit.referrer", v.Referrer, "https://www.example.com/")
	eq(t, "visit.ip", v.IP, "203.0.113.24")
	if v.Geolocation == nil {
		t.Fatal("visit.geolocation missing")
	}
	eq(t, "visit.geolocation", *v.Geolocation, Geolocation{Country: "Spain", CountryCode: "ES", Region: "Madrid",
		City: "Madrid", Timezone: "Europe/Madrid", Latitude: "40.4167", Longitude: "-3.7033"})
	if len(v.LastPages) != 2 || v.LastPages[1].URL != "https://shop.example.com/account/invoices" ||
		ts(v.LastPages[1].OpenedAt) != "2025-03-14T09:14:03.118520Z" || v.LastPages[1].Title != "Your invoices | Example Shop" {
		t.Errorf("visit.last_pages = %+v", v.LastPages)
	}
}

// checkMaria checks the customer object shared by several fixtures.
func checkMaria(t *testing.T, u *User) {
	t.Helper()
	eq(t, "customer.id", u.ID, tCust)
	eq(t, "customer.type", u.Type, "customer")
	eq(t, "customer.name", u.Name, "Maria Lopez")
	eq(t, "customer.email", u.Email, "maria.lopez@example.com")
	eq(t, "customer.email_verified", u.EmailVerified, true)
	eq(t, "customer.phone_number", u.PhoneNumber, "+34 600 000 123")
	eq(t, "customer.created_at", ts(u.CreatedAt), "2024-11-02T18:04:11.204513Z")
	eq(t, "customer.events_seen_up_to", ts(u.EventsSeenUpTo), "2025-03-14T09:15:10.004000Z")
	eq(t, "customer.agent_last_event_created_at", ts(u.AgentLastEventCreatedAt), "2025-03-14T09:15:02.530000Z")
	eq(t, "customer.customer_last_event_created_at", ts(u.CustomerLastEventCreatedAt), "2025-03-14T09:15:10.004000Z")
	eq(t, "customer.session_fields", u.SessionFields, []map[string]Loose{{"plan": "premium"}, {"customer_ref": "CUS-10442"}, {"cart_value": "129.9"}})
	eq(t, "customer.state", u.State, "chatting")
	eq(t, "customer.online", u.Online, true)
	eq(t, "customer.group_ids", u.GroupIDs, []uint32{0})
	eq(t, "customer.statistics", u.Statistics, &CustomerStatistics{ChatsCount: 2, ThreadsCount: 3, VisitsCount: 7,
		PageViewsCount: 19, GreetingsShownCount: 2, GreetingsAcceptedCount: 1})
	checkMariaVisit(t, u.CurrentVisit())
}

var tSchedule36 = &WorkScheduler{Timezone: "Europe/Madrid", Schedule: []ScheduleItem{
	{Day: "monday", Enabled: true, Start: "08:30", End: "12:30"},
	{Day: "monday", Enabled: true, Start: "13:30", End: "16:30"},
	{Day: "friday", Enabled: false, Start: "07:30", End: "15:00"},
}}

var tAdditionalFull = &AdditionalData{
	ChatProperties: Properties{
		"routing": {"continuous": stdjson.RawMessage("false"), "pinned": stdjson.RawMessage("false")},
		"source":  {"client_id": stdjson.RawMessage(`"c5e4f61e1a6c3b1a7b8c9d0e1f2a3b4c"`)},
	},
	ChatPresenceUserIDs: []string{tCust, tAnna},
}

func checkAdditionalFull(t *testing.T, w *Webhook) {
	t.Helper()
	a := w.AdditionalData
	if a == nil {
		t.Fatal("additional_data missing")
	}
	eq(t, "additional_data.chat_presence_user_ids", a.ChatPresenceUserIDs, tAdditionalFull.ChatPresenceUserIDs)
	propBool(t, a.ChatProperties, "routing", "continuous", false)
	propString(t, a.ChatProperties, "source", "client_id", "c5e4f61e1a6c3b1a7b8c9d0e1f2a3b4c")
}

var v36Checks = map[string]func(t *testing.T, w *Webhook){
	// ------------------------------------------------------------ chats
	"incoming_chat": func(t *testing.T, w *Webhook) {
		p := as[IncomingChat](t, w)
		checkAdditionalFull(t, w)
		c := p.Chat
		eq(t, "chat.id", c.ID, tChat)
		eq(t, "requester_id", p.RequesterID, "")
		if p.TransferredFrom != nil {
			t.Errorf("transferred_from = %+v, want absent", p.TransferredFrom)
		}
		eq(t, "chat.access", c.Access, &Access{GroupIDs: []uint32{0}})
		propString(t, c.Properties, "source", "client_id", "c5e4f61e1a6c3b1a7b8c9d0e1f2a3b4c")
		if len(c.Users) != 2 {
			t.Fatalf("%d users", len(c.Users))
		}
		checkMaria(t, &c.Users[0])
		a := c.Users[1]
		eq(t, "agent", [4]string{a.ID, a.Type, a.Name, a.Visibility}, [4]string{tAnna, "agent", "Anna Kowalski", "all"})
		th := c.Thread
		if th == nil || len(c.Threads) != 0 {
			t.Fatalf("thread %v threads %d: the webhook carries a single thread", th, len(c.Threads))
		}
		eq(t, "thread.id", th.ID, tThread)
		eq(t, "thread.active", th.Active, true)
		eq(t, "thread.user_ids", th.UserIDs, []string{tCust, tAnna})
		eq(t, "thread.created_at", ts(th.CreatedAt), "2025-03-14T09:15:02.118001Z")
		eq(t, "thread.previous_thread_id", th.PreviousThreadID, "QV2K7TNP4B")
		eq(t, "thread.restricted_access", th.RestrictedAccess, Loose(""))
		propString(t, th.Properties, "routing", "start_url", "https://shop.example.com/account/invoices")
		propBool(t, th.Properties, "routing", "unassigned", false)
		propInt(t, th.Properties, "lc2", "greeting_id", 7)
		if th.CustomerVisit == nil || th.CustomerVisit.IP != "203.0.113.24" || th.CustomerVisit.Geolocation.CountryCode != "ES" {
			t.Errorf("thread.customer_visit = %+v", th.CustomerVisit)
		}
		if th.Queue != nil {
			t.Errorf("thread.queue = %+v, want absent", th.Queue)
		}
		if len(th.Events) != 7 {
			t.Fatalf("%d events", len(th.Events))
		}
		types := make([]string, len(th.Events))
		for i, e := range th.Events {
			types[i] = e.Type
			if !strings.HasPrefix(e.ID, tThread+"_") || len(e.Raw) == 0 {
				t.Errorf("event %d: id %q raw %d bytes", i, e.ID, len(e.Raw))
			}
		}
		eq(t, "event types", types, []string{"message", "filled_form", "system_message", "message", "file", "message", "message"})
		g := th.Events[0]
		propInt(t, g.Properties, "lc2", "greeting_id", 7)
		propString(t, g.Properties, "lc2", "greeting_unique_id", "h2k9x1c7v5")
		if g.IsWelcome() || !th.Events[3].IsWelcome() {
			t.Error("only event _4 is the welcome message")
		}
		form := th.Events[1]
		eq(t, "form", [3]string{form.FormID, form.FormType, form.AuthorID}, [3]string{"172604318822009341", "prechat", tCust})
		if len(form.Fields) != 4 {
			t.Fatalf("%d form fields", len(form.Fields))
		}
		eq(t, "form answer (string)", string(form.Fields[0].Answer), `"Maria Lopez"`)
		var choice struct {
			ID      string `json:"id"`
			Label   string `json:"label"`
			GroupID uint32 `json:"group_id"`
		}
		if err := stdjson.Unmarshal(form.Fields[2].Answer, &choice); err != nil || choice.GroupID != 2 || choice.Label != "Billing" {
			t.Errorf("group_chooser answer %s → %+v, %v", form.Fields[2].Answer, choice, err)
		}
		var answers []FormOption
		if err := stdjson.Unmarshal(form.Fields[3].Answers, &answers); err != nil || len(answers) != 2 || answers[1].Label != "Refund" {
			t.Errorf("checkbox answers %s → %+v, %v", form.Fields[3].Answers, answers, err)
		}
		sys := th.Events[2]
		eq(t, "system_message", [3]string{sys.SystemMessageType, sys.AuthorID, string(sys.TextVars["agent"])}, [3]string{"routing.assigned", "", "Anna Kowalski"})
		f := th.Events[4]
		eq(t, "file", [4]any{f.Name, f.ContentType, f.Size, f.Width}, [4]any{"invoice-2025-03.png", "image/png", int64(184220), int64(1240)})
		eq(t, "file.alternative_text", f.AlternativeText, "Screenshot of the March invoice")
		eq(t, "internal note visibility", th.Events[6].Visibility, "agents")
		eq(t, "last event created_at", ts(th.Events[6].CreatedAt), "2025-03-14T09:15:12.440000Z")
	},
	"incoming_chat.transferred_queued": func(t *testing.T, w *Webhook) {
		p := as[IncomingChat](t, w)
		eq(t, "requester_id", p.RequesterID, tAnna)
		eq(t, "transferred_from", p.TransferredFrom, &TransferTarget{GroupIDs: []uint32{0}, AgentIDs: []string{tAnna}})
		th := p.Chat.Thread
		eq(t, "chat.id/thread.id", [2]string{p.Chat.ID, th.ID}, [2]string{tChat2, tThread2})
		eq(t, "thread.tags", th.Tags, []string{"payments"})
		eq(t, "thread.access", th.Access, &Access{GroupIDs: []uint32{2}})
		propBool(t, th.Properties, "routing", "unassigned", true)
		if th.Queue == nil {
			t.Fatal("thread.queue missing")
		}
		eq(t, "queue", [3]any{th.Queue.Position, th.Queue.WaitTime, ts(th.Queue.QueuedAt)}, [3]any{int64(3), int64(180), "2025-03-14T10:02:44.615000Z"})
		eq(t, "queued_at ms", th.Queue.QueuedAtMilli(), uint64(1741946564615))
	},
	"incoming_chat.restricted": func(t *testing.T, w *Webhook) {
		th := as[IncomingChat](t, w).Chat.Thread
		eq(t, "restricted_access", th.RestrictedAccess, Loose("Chat history older than 60 days is not available on your plan."))
		eq(t, "events", len(th.Events), 0)
	},
	"incoming_chat.restricted_bool": func(t *testing.T, w *Webhook) {
		th := as[IncomingChat](t, w).Chat.Thread
		eq(t, "restricted_access", th.RestrictedAccess, Loose("true"))
		eq(t, "previous_thread_id", th.PreviousThreadID, tThread)
	},
	"chat_deactivated": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[ChatDeactivated](t, w), ChatDeactivated{ChatID: tChat, ThreadID: tThread, UserID: tTom})
		checkAdditionalFull(t, w)
	},
	"chat_deactivated.system": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[ChatDeactivated](t, w), ChatDeactivated{ChatID: tChat2, ThreadID: tThread2})
	},
	"chat_access_updated": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[ChatAccessUpdated](t, w), ChatAccessUpdated{ID: tChat, Access: Access{GroupIDs: []uint32{0, 2}}})
		eq(t, "additional_data.chat_presence_user_ids", w.AdditionalData.ChatPresenceUserIDs, []string(nil))
		propBool(t, w.AdditionalData.ChatProperties, "routing", "pinned", false)
	},
	"chat_transferred": func(t *testing.T, w *Webhook) {
		p := as[ChatTransferred](t, w)
		eq(t, "payload", *p, ChatTransferred{ChatID: tChat, ThreadID: tThread, RequesterID: tAnna, Reason: "manual",
			TransferredTo: TransferTarget{GroupIDs: []uint32{2}, AgentIDs: []string{tTom}}})
		eq(t, "queued_at ms", p.Queue.QueuedAtMilli(), uint64(0))
	},
	"chat_transferred.queued": func(t *testing.T, w *Webhook) {
		p := as[ChatTransferred](t, w)
		eq(t, "ids", [4]string{p.ChatID, p.ThreadID, p.RequesterID, p.Reason}, [4]string{tChat2, tThread2, tAnna, "unassigned"})
		eq(t, "transferred_to.group_ids", p.TransferredTo.GroupIDs, []uint32{2})
		eq(t, "transferred_to.agent_ids", len(p.TransferredTo.AgentIDs), 0)
		if p.Queue == nil {
			t.Fatal("queue missing")
		}
		eq(t, "queue", [3]any{p.Queue.Position, p.Queue.WaitTime, p.Queue.QueuedAtMilli()}, [3]any{int64(3), int64(180), uint64(1741946564615)})
	},
	"user_added_to_chat": func(t *testing.T, w *Webhook) {
		p := as[UserAddedToChat](t, w)
		eq(t, "ids", [5]string{p.ChatID, p.ThreadID, p.UserType, p.Reason, p.RequesterID}, [5]string{tChat, tThread, "agent", "manual", tAnna})
		eq(t, "user", [4]string{p.User.ID, p.User.Type, p.User.Name, p.User.Visibility}, [4]string{tTom, "agent", "Tom Baker", "all"})
		eq(t, "user.events_seen_up_to", ts(p.User.EventsSeenUpTo), "1970-01-01T00:00:00.000000Z")
		eq(t, "additional_data.chat_presence_user_ids", w.AdditionalData.ChatPresenceUserIDs, []string{tCust, tAnna, tTom})
	},
	"user_added_to_chat.customer": func(t *testing.T, w *Webhook) {
		p := as[UserAddedToChat](t, w)
		eq(t, "ids", [4]string{p.ChatID, p.UserType, p.Reason, p.RequesterID}, [4]string{tChat, "customer", "other", ""})
		checkMaria(t, &p.User)
		if p.User.Visit == nil || p.User.LastVisit != nil {
			t.Error("3.6 customer: visit, not last_visit")
		}
	},
	"user_removed_from_chat": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[UserRemovedFromChat](t, w), UserRemovedFromChat{ChatID: tChat, ThreadID: tThread, UserID: tAnna,
			UserType: "agent", Reason: "manual", RequesterID: tTom})
		eq(t, "additional_data.chat_presence_user_ids", w.AdditionalData.ChatPresenceUserIDs, []string{tCust, tTom})
	},
	// ------------------------------------------------------------ events
	"incoming_event": func(t *testing.T, w *Webhook) {
		p := as[IncomingEvent](t, w)
		checkAdditionalFull(t, w)
		e := p.Event
		eq(t, "ids", [4]string{p.ChatID, p.ThreadID, e.ID, e.CustomID}, [4]string{tChat, tThread, tThread + "_8", "m1n4b8v3c6"})
		eq(t, "event", [4]string{e.Type, e.AuthorID, e.Visibility, e.Text}, [4]string{"message", tCust, "all", "The order number is 48213."})
		eq(t, "created_at", ts(e.CreatedAt), "2025-03-14T09:16:45.210000Z")
		eq(t, "postback", e.Postback, &EventPostback{ID: "refund_yes", ThreadID: tThread, EventID: tThread + "_9", Type: "message", Value: "Yes, please"})
		if !bytes.Contains(e.Raw, []byte(`"The order number is 48213."`)) {
			t.Errorf("event raw = %s", e.Raw)
		}
	},
	"incoming_event.rich_message": func(t *testing.T, w *Webhook) {
		e := as[IncomingEvent](t, w).Event
		eq(t, "event", [3]string{e.Type, e.AuthorID, e.TemplateID}, [3]string{"rich_message", tBot, "cards"})
		if len(e.Elements) != 1 || len(e.Elements[0].Buttons) != 2 {
			t.Fatalf("elements = %+v", e.Elements)
		}
		el := e.Elements[0]
		eq(t, "element", [2]string{el.Title, el.Subtitle}, [2]string{"Premium plan", "Billed monthly"})
		var img struct {
			URL   string `json:"url"`
			Width int    `json:"width"`
		}
		if err := stdjson.Unmarshal(el.Image, &img); err != nil || img.URL != "https://cdn.example.com/plans/premium.png" || img.Width != 600 {
			t.Errorf("image %s → %+v, %v", el.Image, img, err)
		}
		eq(t, "button 0", el.Buttons[0], RichButton{Text: "Open invoice", Type: "webview", Value: "https://shop.example.com/account/invoices/48213",
			WebviewHeight: "tall", PostbackID: "open_invoice", UserIDs: []string{}, Target: "new_tab"})
		eq(t, "button 1 user_ids", el.Buttons[1].UserIDs, []string{tCust})
	},
	"incoming_event.system_message": func(t *testing.T, w *Webhook) {
		e := as[IncomingEvent](t, w).Event
		eq(t, "event", [4]string{e.ID, e.Type, e.AuthorID, e.SystemMessageType}, [4]string{tThread + "_14", "system_message", "", "rating.chat_rated"})
		eq(t, "text_vars", e.TextVars, map[string]Loose{"score": "good", "customer": "Maria Lopez"})
		eq(t, "text", e.Text, "Maria Lopez rated the chat as good")
	},
	"incoming_event.custom": func(t *testing.T, w *Webhook) {
		e := as[IncomingEvent](t, w).Event
		eq(t, "event", [4]string{e.ID, e.Type, e.AuthorID, e.Visibility}, [4]string{"4f1a2b3c-5d6e-4f70-8a9b-0c1d2e3f4a5b", "custom", tBot, "agents"})
		var content map[string]any
		if err := stdjson.Unmarshal(e.Content, &content); err != nil || content["kind"] != "order_lookup" || content["order"] != 48213.0 {
			t.Errorf("content %s → %v, %v", e.Content, content, err)
		}
	},
	"event_updated": func(t *testing.T, w *Webhook) {
		p := as[EventUpdated](t, w)
		checkAdditionalFull(t, w)
		eq(t, "ids", [3]string{p.ChatID, p.ThreadID, p.Event.ID}, [3]string{tChat, tThread, tThread + "_8"})
		eq(t, "text", p.Event.Text, "The order number is 48231, sorry.")
		eq(t, "created_at (original)", ts(p.Event.CreatedAt), "2025-03-14T09:16:45.210000Z")
		propBool(t, p.Event.Properties, "lc2", "edited", true)
	},
	"event_deleted": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[EventDeleted](t, w), EventDeleted{ChatID: tChat, ThreadID: tThread, EventID: tThread + "_7"})
	},
	"incoming_rich_message_postback": func(t *testing.T, w *Webhook) {
		p := as[IncomingRichMessagePostback](t, w)
		eq(t, "ids", [4]string{p.UserID, p.ChatID, p.ThreadID, p.EventID}, [4]string{tCust, tChat, tThread, tThread + "_10"})
		eq(t, "postback", p.Postback, Postback{ID: "add_to_cart", Toggled: true, ButtonType: "cart", ButtonValue: "Add to cart",
			Ecommerce: &Ecommerce{ProductID: "SKU-4471", OptionID: "2", Quantity: "1"}})
	},
	// ------------------------------------------------------------ properties
	"chat_properties_updated": func(t *testing.T, w *Webhook) {
		p := as[ChatPropertiesUpdated](t, w)
		eq(t, "chat_id", p.ChatID, tChat)
		eq(t, "namespaces", sortedKeys(p.Properties), []string{tAppNS, "rating"})
		propInt(t, p.Properties, "rating", "score", 1)
		propString(t, p.Properties, "rating", "comment", "Quick and friendly, refund confirmed.")
		propString(t, p.Properties, tAppNS, "crm_ticket", "T-99120")
	},
	"chat_properties_deleted": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[ChatPropertiesDeleted](t, w), ChatPropertiesDeleted{ChatID: tChat,
			Properties: DeletedProperties{"rating": {"comment"}, tAppNS: {"crm_ticket", "crm_sync"}}})
	},
	"thread_properties_updated": func(t *testing.T, w *Webhook) {
		p := as[ThreadPropertiesUpdated](t, w)
		eq(t, "ids", [2]string{p.ChatID, p.ThreadID}, [2]string{tChat, tThread})
		eq(t, "namespaces", sortedKeys(p.Properties), []string{"ecommerce", "routing"})
		propBool(t, p.Properties, "routing", "unassigned", true)
		propInt(t, p.Properties, "routing", "last_transfer_timestamp", 1741943940)
		propBool(t, p.Properties, "ecommerce", "has_sale", true)
	},
	"thread_properties_deleted": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[ThreadPropertiesDeleted](t, w), ThreadPropertiesDeleted{ChatID: tChat, ThreadID: tThread,
			Properties: DeletedProperties{"routing": {"idle", "unreplied"}, "lc2": {"greeting_id"}}})
	},
	"event_properties_updated": func(t *testing.T, w *Webhook) {
		p := as[EventPropertiesUpdated](t, w)
		eq(t, "ids", [3]string{p.ChatID, p.ThreadID, p.EventID}, [3]string{tChat, tThread, tThread + "_6"})
		propString(t, p.Properties, tAppNS, "sentiment", "negative")
		propBool(t, p.Properties, tAppNS, "reviewed", false)
		eq(t, "confidence", string(p.Properties[tAppNS]["confidence"]), "0.87")
	},
	"event_properties_deleted": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[EventPropertiesDeleted](t, w), EventPropertiesDeleted{ChatID: tChat, ThreadID: tThread, EventID: tThread + "_6",
			Properties: DeletedProperties{tAppNS: {"sentiment"}}})
	},
	// ------------------------------------------------------------ tags, status, customers
	"thread_tagged": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[ThreadTagged](t, w), ThreadTagged{ChatID: tChat, ThreadID: tThread, Tag: "billing"})
		checkAdditionalFull(t, w)
	},
	"thread_untagged": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[ThreadUntagged](t, w), ThreadUntagged{ChatID: tChat, ThreadID: tThread, Tag: "sales"})
	},
	"routing_status_set": func(t *testing.T, w *Webhook) {
		p := as[RoutingStatusSet](t, w)
		eq(t, "payload", *p, RoutingStatusSet{AgentID: tAnna, Status: "accepting chats"})
		eq(t, "normalized", p.NormalizedStatus(), "accepting_chats")
	},
	"routing_status_set.underscore": func(t *testing.T, w *Webhook) {
		p := as[RoutingStatusSet](t, w)
		eq(t, "agent_id", p.AgentID, tTom)
		eq(t, "normalized", p.NormalizedStatus(), "not_accepting_chats")
	},
	"routing_status_set.bot_offline": func(t *testing.T, w *Webhook) {
		p := as[RoutingStatusSet](t, w)
		eq(t, "agent_id", p.AgentID, tBot)
		eq(t, "normalized", p.NormalizedStatus(), "offline")
	},
	"customer_session_fields_updated": func(t *testing.T, w *Webhook) {
		p := as[CustomerSessionFieldsUpdated](t, w)
		eq(t, "customer id", p.ID, tCust)
		eq(t, "active_chat", p.ActiveChat, ActiveChat{ChatID: tChat, ThreadID: tThread})
		eq(t, "session_fields", p.SessionFields, []map[string]Loose{{"plan": "premium"}, {"customer_ref": "CUS-10442"}, {"cart_value": "129.9"}, {"logged_in": "true"}})
		eq(t, "additional_data.chat_presence_user_ids", w.AdditionalData.ChatPresenceUserIDs, []string{tCust, tTom})
	},
	"customer_session_fields_updated.active_chat_array": func(t *testing.T, w *Webhook) {
		p := as[CustomerSessionFieldsUpdated](t, w)
		eq(t, "customer id", p.ID, tCust)
		eq(t, "active_chat", p.ActiveChat, ActiveChat{ChatID: tChat, ThreadID: tThread})
		eq(t, "session_fields", len(p.SessionFields), 4)
	},
	// ------------------------------------------------------------ configuration
	"agent_created": func(t *testing.T, w *Webhook) {
		p := as[AgentCreated](t, w)
		eq(t, "ids", [3]string{p.ID, p.AccountID, p.Name}, [3]string{tLi, "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "Li Wei"})
		eq(t, "role/job/login", [3]string{p.Role, p.JobTitle, p.LoginStatus}, [3]string{"normal", "Billing Specialist", "not accepting chats"})
		eq(t, "avatar", p.Avatar, "https://cdn.example.com/avatars/li.png")
		eq(t, "max_chats_count", p.MaxChatsCount, int64(4))
		eq(t, "awaiting_approval/suspended", [2]bool{p.AwaitingApproval, p.Suspended}, [2]bool{true, false})
		eq(t, "groups", p.Groups, []GroupPriority{{ID: 0, Priority: "normal"}, {ID: 2, Priority: "first"}})
		eq(t, "notifications", p.Notifications, []string{"new_visitor", "incoming_chat", "queued_visitor"})
		eq(t, "email_subscriptions", p.EmailSubscriptions, []string{"weekly_summary"})
		eq(t, "work_scheduler", p.WorkScheduler, tSchedule36)
		eq(t, "last_logout", ts(p.LastLogout), "")
	},
	"agent_approved": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[AgentApproved](t, w), AgentApproved{ID: tLi})
	},
	"agent_suspended": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[AgentSuspended](t, w), AgentSuspended{ID: tLi})
	},
	"agent_unsuspended": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[AgentUnsuspended](t, w), AgentUnsuspended{ID: tLi})
	},
	"agent_deleted": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[AgentDeleted](t, w), AgentDeleted{ID: tLi})
	},
	"agent_updated": func(t *testing.T, w *Webhook) {
		p := as[AgentUpdated](t, w)
		eq(t, "id", p.ID, tTom)
		eq(t, "changed", p.Changed, []string{"groups", "job_title", "max_chats_count", "name"})
		eq(t, "name", p.Name, "Tom Baker-Reed")
		eq(t, "job_title (cleared)", p.JobTitle, "")
		eq(t, "max_chats_count", p.MaxChatsCount, int64(8))
		eq(t, "groups", p.Groups, []GroupPriority{{ID: 0, Priority: "last"}, {ID: 2, Priority: "normal"}, {ID: 5, Priority: "supervisor"}})
		if p.WorkScheduler != nil || p.Role != "" {
			t.Errorf("unchanged fields set: %+v", p.Agent)
		}
	},
	"agent_updated.work_scheduler": func(t *testing.T, w *Webhook) {
		p := as[AgentUpdated](t, w)
		eq(t, "id", p.ID, tAnna)
		eq(t, "changed", p.Changed, []string{"work_scheduler"})
		eq(t, "work_scheduler", p.WorkScheduler, tSchedule36)
	},
	"auto_accesses_updated": func(t *testing.T, w *Webhook) {
		p := *as[AutoAccessesUpdated](t, w)
		if len(p) != 2 {
			t.Fatalf("%d rules", len(p))
		}
		eq(t, "rule 0 (moved)", p[0], AutoAccess{ID: tRuleA, NextID: tRuleB, Status: "updated", Fields: []string{"next_id"}})
		r := p[1]
		eq(t, "rule 1 id/status/next", [3]string{r.ID, r.Status, r.NextID}, [3]string{tRuleB, "added", ""})
		eq(t, "rule 1 fields", r.Fields, []string{"access", "conditions", "description", "next_id"})
		eq(t, "rule 1 access", r.Access, &AutoAccessTarget{Groups: []uint32{2}})
		if r.Conditions == nil || r.Conditions.URL == nil || r.Conditions.Domain == nil || r.Conditions.Geolocation == nil {
			t.Fatalf("rule 1 conditions = %+v", r.Conditions)
		}
		eq(t, "url", *r.Conditions.URL, MatchCondition{
			Values:        []Match{{Value: "https://shop.example.com/account/invoices"}},
			ExcludeValues: []Match{{Value: "https://shop.example.com/account/invoices/help", ExactMatch: true}}})
		eq(t, "domain", r.Conditions.Domain.Values, []Match{{Value: "shop.example.com", ExactMatch: true}})
		eq(t, "geolocation", r.Conditions.Geolocation.Values, []GeolocationMatch{{Country: "Spain", CountryCode: "ES", Region: "Madrid", City: "Madrid"}})
	},
	"auto_accesses_updated.updated": func(t *testing.T, w *Webhook) {
		p := *as[AutoAccessesUpdated](t, w)
		if len(p) != 2 {
			t.Fatalf("%d rules", len(p))
		}
		eq(t, "rule 0", [4]string{p[0].ID, p[0].Status, p[0].NextID, p[0].Description}, [4]string{tRuleA, "updated", "", "Chats on shop.example.com from Spain"})
		eq(t, "rule 0 fields", p[0].Fields, []string{"access", "conditions", "description", "next_id"})
		eq(t, "rule 0 access", p[0].Access, &AutoAccessTarget{Groups: []uint32{1}})
		if c := p[0].Conditions; c == nil || c.URL != nil || c.Geolocation.Values[0].CountryCode != "ES" {
			t.Errorf("rule 0 conditions = %+v", c)
		}
		eq(t, "rule 1", p[1], AutoAccess{ID: tRuleB, Description: "Invoice pages", NextID: tRuleA, Status: "updated", Fields: []string{"description", "next_id"}})
	},
	"auto_accesses_updated.deleted": func(t *testing.T, w *Webhook) {
		eq(t, "rules", *as[AutoAccessesUpdated](t, w), AutoAccessesUpdated{
			{ID: tRuleB, Status: "updated", Fields: []string{"next_id"}},
			{ID: tRuleA, Status: "deleted"}})
	},
	"bot_created": func(t *testing.T, w *Webhook) {
		p := as[BotCreated](t, w)
		eq(t, "id/name", [2]string{p.ID, p.Name}, [2]string{tBot, "Billing Assistant"})
		eq(t, "groups", p.Groups, []GroupPriority{{ID: 0, Priority: "normal"}, {ID: 2, Priority: "first"}})
		eq(t, "owner_client_id", p.OwnerClientID, "c5e4f61e1a6c3b1a7b8c9d0e1f2a3b4c")
		eq(t, "default_group_priority", p.DefaultGroupPriority, "first")
		eq(t, "optional", [4]any{p.Avatar, p.MaxChatsCount, p.JobTitle, p.Timezone},
			[4]any{"https://cdn.example.com/avatars/bot.png", int64(25), "Virtual assistant", "Europe/Madrid"})
		eq(t, "work_scheduler", p.WorkScheduler, &WorkScheduler{Timezone: "Europe/Madrid", Schedule: []ScheduleItem{
			{Day: "saturday", Enabled: true, Start: "00:00", End: "23:59"}, {Day: "sunday", Enabled: true, Start: "00:00", End: "23:59"}}})
	},
	"bot_updated": func(t *testing.T, w *Webhook) {
		p := as[BotUpdated](t, w)
		eq(t, "id/name", [2]string{p.ID, p.Name}, [2]string{tBot, "Billing Assistant v2"})
		eq(t, "changed", p.Changed, []string{"groups", "max_chats_count", "name"})
		eq(t, "max_chats_count", p.MaxChatsCount, int64(40))
		eq(t, "groups", p.Groups, []GroupPriority{{ID: 2, Priority: "first"}})
		eq(t, "owner_client_id (unchanged)", p.OwnerClientID, "")
	},
	"bot_deleted": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[BotDeleted](t, w), BotDeleted{ID: tBot})
	},
	"group_created": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[GroupCreated](t, w), GroupCreated{ID: 5, Name: "Refunds", LanguageCode: "es",
			AgentPriorities: map[string]string{tTom: "normal", tAnna: "last", tLi: "first", "admin.owner@example.com": "supervisor"}})
	},
	"group_updated": func(t *testing.T, w *Webhook) {
		p := as[GroupUpdated](t, w)
		eq(t, "id/name", [2]any{p.ID, p.Name}, [2]any{uint32(2), "Billing & Refunds"})
		eq(t, "changed", p.Changed, []string{"agent_priorities", "name"})
		eq(t, "agent_priorities", p.AgentPriorities, map[string]string{tTom: "first", tLi: "normal"})
		eq(t, "language_code (unchanged)", p.LanguageCode, "")
	},
	"group_deleted": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[GroupDeleted](t, w), GroupDeleted{ID: 5})
	},
	"tag_created": func(t *testing.T, w *Webhook) {
		p := as[TagCreated](t, w)
		eq(t, "name/author", [2]string{p.Name, p.AuthorID}, [2]string{"refund", "admin.owner@example.com"})
		eq(t, "group_ids", p.GroupIDs, []uint32{0, 2})
		eq(t, "created_at", ts(p.CreatedAt), "2025-03-14T08:02:11.337000Z")
	},
	"tag_updated": func(t *testing.T, w *Webhook) {
		p := as[TagUpdated](t, w)
		eq(t, "name", p.Name, "refund")
		eq(t, "group_ids", p.GroupIDs, []uint32{2, 5})
		eq(t, "created_at", ts(p.CreatedAt), "")
	},
	"tag_deleted": func(t *testing.T, w *Webhook) {
		p := as[TagDeleted](t, w)
		eq(t, "name", p.Name, "sales")
		eq(t, "group_ids", len(p.GroupIDs), 0)
	},
	// ------------------------------------------------------------ other
	"events_marked_as_seen": func(t *testing.T, w *Webhook) {
		p := as[EventsMarkedAsSeen](t, w)
		eq(t, "ids", [2]string{p.UserID, p.ChatID}, [2]string{tCust, tChat})
		eq(t, "seen_up_to", ts(p.SeenUpTo), "2025-03-14T09:17:31.902000Z")
		checkAdditionalFull(t, w)
	},
	"thread_summary_set": func(t *testing.T, w *Webhook) {
		p := as[ThreadSummarySet](t, w)
		eq(t, "ids", [2]string{p.ChatID, p.ThreadID}, [2]string{tChat, tThread})
		eq(t, "status", p.Summary.Status, "ok")
		eq(t, "updated_at", ts(p.Summary.UpdatedAt), "2025-03-14T09:25:52.418000Z")
		if !strings.HasPrefix(p.Summary.Text, "- Customer was charged twice") || !strings.Contains(p.Summary.Text, "\n- Moved to Billing") {
			t.Errorf("summary text = %q", p.Summary.Text)
		}
	},
}

// tSchedule34 is testdata/v3.4/agent_created's day-keyed work_scheduler in
// the v3.5+ form (weekday order, enabled, no timezone).
var tSchedule34 = &WorkScheduler{Schedule: []ScheduleItem{
	{Day: "monday", Enabled: true, Start: "08:30", End: "16:30"},
	{Day: "friday", Enabled: true, Start: "07:30", End: "15:00"},
}}

var legacyChecks = map[string]func(t *testing.T, w *Webhook){
	"v3.2/chat_user_added": func(t *testing.T, w *Webhook) {
		eq(t, "canonical", w.Canonical, "user_added_to_chat")
		p := as[UserAddedToChat](t, w)
		eq(t, "ids", [3]string{p.ChatID, p.ThreadID, p.UserType}, [3]string{tChat, tThread, "customer"})
		checkMaria(t, &p.User)
		if p.User.Visit != nil || p.User.LastVisit == nil {
			t.Error("pre-3.6 customer: last_visit, not visit")
		}
	},
	"v3.2/chat_user_removed": func(t *testing.T, w *Webhook) {
		eq(t, "canonical", w.Canonical, "user_removed_from_chat")
		eq(t, "payload", *as[UserRemovedFromChat](t, w), UserRemovedFromChat{ChatID: tChat, ThreadID: tThread, UserID: tAnna, UserType: "agent"})
	},
	"v3.2/customer_created": func(t *testing.T, w *Webhook) {
		eq(t, "canonical", w.Canonical, "incoming_customer")
		c := as[IncomingCustomer](t, w).Customer
		eq(t, "customer", [3]string{c.ID, c.Email, c.Avatar}, [3]string{tCust, "maria.lopez@example.com", "https://cdn.example.com/avatars/maria.png"})
		eq(t, "created_at", ts(c.CreatedAt), "2024-11-02T18:04:11.204513Z")
		eq(t, "session_fields", c.SessionFields, []map[string]Loose{{"plan": "premium"}, {"customer_ref": "CUS-10442"}})
	},
	"v3.3/chat_access_granted": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[ChatAccessGranted](t, w), ChatAccessGranted{ID: tChat, Access: Access{GroupIDs: []uint32{2}}})
	},
	"v3.3/chat_access_revoked": func(t *testing.T, w *Webhook) {
		eq(t, "payload", *as[ChatAccessRevoked](t, w), ChatAccessRevoked{ID: tChat, Access: Access{GroupIDs: []uint32{0}}})
	},
	"v3.3/agent_deleted": func(t *testing.T, w *Webhook) {
		eq(t, "payload (agent_id)", *as[AgentDeleted](t, w), AgentDeleted{ID: tLi})
	},
	"v3.3/incoming_customer": func(t *testing.T, w *Webhook) {
		checkMaria(t, &as[IncomingCustomer](t, w).Customer)
	},
	"v3.4/auto_access_added": func(t *testing.T, w *Webhook) {
		r := as[AutoAccessAdded](t, w).AutoAccess
		eq(t, "id/next/status", [3]string{r.ID, r.NextID, r.Status}, [3]string{tRuleB, tRuleC, ""})
		eq(t, "description", r.Description, "Invoice pages from Spain")
		eq(t, "access", r.Access, &AutoAccessTarget{Groups: []uint32{2}})
		eq(t, "domain", r.Conditions.Domain.Values, []Match{{Value: "shop.example.com", ExactMatch: true}})
		eq(t, "geolocation", r.Conditions.Geolocation.Values, []GeolocationMatch{{Country: "Spain", CountryCode: "ES"}})
	},
	"v3.4/auto_access_updated": func(t *testing.T, w *Webhook) {
		eq(t, "rule", as[AutoAccessUpdated](t, w).AutoAccess, AutoAccess{ID: tRuleB, Access: &AutoAccessTarget{Groups: []uint32{0, 2}}, Fields: []string{"access"}})
	},
	"v3.4/auto_access_deleted": func(t *testing.T, w *Webhook) {
		eq(t, "rule", as[AutoAccessDeleted](t, w).AutoAccess, AutoAccess{ID: tRuleB})
	},
	"v3.4/agent_created": func(t *testing.T, w *Webhook) {
		p := as[AgentCreated](t, w)
		eq(t, "id/name", [2]string{p.ID, p.Name}, [2]string{tLi, "Li Wei"})
		eq(t, "work_scheduler (day-keyed)", p.WorkScheduler, tSchedule34)
	},
	"v3.4/agent_updated": func(t *testing.T, w *Webhook) {
		p := as[AgentUpdated](t, w)
		eq(t, "id", p.ID, tAnna)
		eq(t, "changed", p.Changed, []string{"work_scheduler"})
		eq(t, "work_scheduler (day-keyed)", p.WorkScheduler, &WorkScheduler{Schedule: []ScheduleItem{
			{Day: "monday", Enabled: true, Start: "08:30", End: "12:30"},
			{Day: "friday", Enabled: true, Start: "07:30", End: "21:30"}}})
	},
	"v3.5/incoming_customer": func(t *testing.T, w *Webhook) {
		checkMaria(t, &as[IncomingCustomer](t, w).Customer)
	},
	"v3.5/incoming_customer.flat": func(t *testing.T, w *Webhook) {
		checkMaria(t, &as[IncomingCustomer](t, w).Customer)
	},
	"v3.5/chat_transferred": func(t *testing.T, w *Webhook) {
		p := as[ChatTransferred](t, w)
		eq(t, "ids", [3]string{p.ChatID, p.ThreadID, p.Reason}, [3]string{tChat2, tThread2, "unassigned"})
		eq(t, "queue.queued_at_us", p.Queue.QueuedAtUS, int64(1741946564615000))
		eq(t, "queued_at ms", p.Queue.QueuedAtMilli(), uint64(1741946564615))
	},
}

// rewrite returns the fixture with its action renamed and, when edit is
// set, its payload replaced by edit(payload).
func rewrite(t *testing.T, path, action string, edit func(p any) any) []byte {
	t.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]any
	dec := stdjson.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		t.Fatal(err)
	}
	env["action"] = action
	if edit != nil {
		env["payload"] = edit(env["payload"])
	}
	out, err := stdjson.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustDecode(t *testing.T, body []byte) *Webhook {
	t.Helper()
	w, err := Decode(body)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return w
}

// TestDecodeLegacyMatchesCurrent checks that an older action name or
// payload shape decodes to the same typed value as the same data sent the
// v3.6 way.
func TestDecodeLegacyMatchesCurrent(t *testing.T) {
	withStatus := func(status string) func(p any) any {
		return func(p any) any {
			m := p.(map[string]any)
			m["status"] = status
			return []any{m}
		}
	}
	schedule36 := func(days ...[3]string) func(p any) any {
		return func(p any) any {
			m := p.(map[string]any)
			var items []any
			for _, d := range days {
				items = append(items, map[string]any{"day": d[0], "enabled": true, "start": d[1], "end": d[2]})
			}
			m["work_scheduler"] = map[string]any{"schedule": items}
			return m
		}
	}
	// view turns a legacy-only type into its v3.6 counterpart.
	autoAccess := func(v any) any {
		var r AutoAccess
		switch x := v.(type) {
		case *AutoAccessAdded:
			r = x.AutoAccess
		case *AutoAccessUpdated:
			r = x.AutoAccess
		case *AutoAccessDeleted:
			r = x.AutoAccess
		case *AutoAccessesUpdated:
			if len(*x) != 1 {
				t.Fatalf("%d rules", len(*x))
			}
			r = (*x)[0]
			r.Status = ""
		}
		return r
	}
	tests := []struct {
		legacy string              // testdata/<legacy>.json
		action string              // the v3.6 action carrying the same data
		edit   func(p any) any     // payload in its v3.6 shape (nil: unchanged)
		view   func(v any) any     // legacy-only type → v3.6 value (nil: identity)
		same   func(a, b any) bool // nil: reflect.DeepEqual of the views
	}{
		{legacy: "v3.2/chat_user_added", action: "user_added_to_chat"},
		{legacy: "v3.2/chat_user_removed", action: "user_removed_from_chat"},
		{legacy: "v3.2/customer_created", action: "incoming_customer", edit: func(p any) any { return map[string]any{"customer": p} }},
		{legacy: "v3.3/chat_access_granted", action: "chat_access_updated", view: func(v any) any {
			if g, ok := v.(*ChatAccessGranted); ok {
				return ChatAccessUpdated(*g)
			}
			return *v.(*ChatAccessUpdated)
		}},
		{legacy: "v3.3/chat_access_revoked", action: "chat_access_updated", view: func(v any) any {
			if g, ok := v.(*ChatAccessRevoked); ok {
				return ChatAccessUpdated(*g)
			}
			return *v.(*ChatAccessUpdated)
		}},
		{legacy: "v3.3/agent_deleted", action: "agent_deleted", edit: func(p any) any {
			return map[string]any{"id": p.(map[string]any)["agent_id"]}
		}},
		{legacy: "v3.3/incoming_customer", action: "incoming_customer", edit: func(p any) any { return p.(map[string]any)["customer"] }},
		{legacy: "v3.4/auto_access_added", action: "auto_accesses_updated", edit: withStatus("added"), view: autoAccess},
		{legacy: "v3.4/auto_access_updated", action: "auto_accesses_updated", edit: withStatus("updated"), view: autoAccess},
		{legacy: "v3.4/auto_access_deleted", action: "auto_accesses_updated", edit: withStatus("deleted"), view: autoAccess},
		{legacy: "v3.4/agent_created", action: "agent_created", edit: schedule36([3]string{"monday", "08:30", "16:30"}, [3]string{"friday", "07:30", "15:00"})},
		{legacy: "v3.4/agent_updated", action: "agent_updated", edit: schedule36([3]string{"monday", "08:30", "12:30"}, [3]string{"friday", "07:30", "21:30"})},
		{legacy: "v3.5/incoming_customer.flat", action: "incoming_customer", edit: func(p any) any { return map[string]any{"customer": p} }},
		{legacy: "v3.5/chat_transferred", action: "chat_transferred", edit: func(p any) any {
			m := p.(map[string]any)
			m["queue"] = map[string]any{"position": 3, "wait_time": 180, "queued_at": "2025-03-14T10:02:44.615000Z"}
			return m
		}, same: func(a, b any) bool {
			x, y := a.(*ChatTransferred), b.(*ChatTransferred)
			return x.Queue.QueuedAtMilli() == y.Queue.QueuedAtMilli() && x.ChatID == y.ChatID && x.Queue.Position == y.Queue.Position &&
				reflect.DeepEqual(x.TransferredTo, y.TransferredTo)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.legacy, func(t *testing.T) {
			path := filepath.Join("testdata", tt.legacy+".json")
			old := decodeFile(t, path)
			cur := mustDecode(t, rewrite(t, path, tt.action, tt.edit))
			if _, unknown := cur.Body.(*Unknown); unknown || cur.Canonical != tt.action {
				t.Fatalf("current form decoded as %T / %q", cur.Body, cur.Canonical)
			}
			if _, mapped := legacyNames[old.Action]; mapped && old.Canonical != tt.action {
				t.Errorf("canonical %q, want %q", old.Canonical, tt.action)
			}
			a, b := any(old.Body), any(cur.Body)
			if tt.view != nil {
				a, b = tt.view(a), tt.view(b)
			}
			same := reflect.DeepEqual(a, b)
			if tt.same != nil {
				same = tt.same(a, b)
			}
			if !same {
				ga, _ := stdjson.MarshalIndent(a, "", " ")
				gb, _ := stdjson.MarshalIndent(b, "", " ")
				t.Fatalf("%s decodes to\n%s\nthe v3.6 form to\n%s", tt.legacy, ga, gb)
			}
		})
	}
}

// TestLegacyNamesDecodeLikeSuccessor sends each v3.6 fixture again under
// every pre-3.3 name that maps to it: same type, same value, canonical name.
func TestLegacyNamesDecodeLikeSuccessor(t *testing.T) {
	for old, cur := range legacyNames {
		t.Run(old, func(t *testing.T) {
			path := filepath.Join("testdata", "v3.6", cur+".json")
			switch cur {
			case "incoming_customer":
				path = filepath.Join("testdata", "v3.5", cur+".json")
			case "chat_access_granted", "chat_access_revoked":
				path = filepath.Join("testdata", "v3.3", cur+".json")
			}
			body, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := mustDecode(t, body)
			renamed := bytes.Replace(body, []byte(`"action": "`+cur+`"`), []byte(`"action": "`+old+`"`), 1)
			if bytes.Equal(renamed, body) {
				t.Fatalf("%s: action not found", path)
			}
			got := mustDecode(t, renamed)
			if got.Action != old || got.Canonical != cur {
				t.Fatalf("action %q canonical %q, want %q → %q", got.Action, got.Canonical, old, cur)
			}
			if !reflect.DeepEqual(got.Body, want.Body) {
				t.Fatalf("%s decodes differently from %s", old, cur)
			}
		})
	}
}

// TestDecodeUnconfirmedShapes pins the two spellings the spec leaves open
// (webhooks.md §7 notes) to one decoded value.
func TestDecodeUnconfirmedShapes(t *testing.T) {
	pairs := [][2]string{
		{"v3.6/customer_session_fields_updated", "v3.6/customer_session_fields_updated.active_chat_array"},
		{"v3.5/incoming_customer", "v3.5/incoming_customer.flat"},
	}
	for _, p := range pairs {
		a := decodeFile(t, filepath.Join("testdata", p[0]+".json"))
		b := decodeFile(t, filepath.Join("testdata", p[1]+".json"))
		if !reflect.DeepEqual(a.Body, b.Body) {
			t.Errorf("%s and %s decode differently", p[0], p[1])
		}
	}
}
