package processor

import (
	stdjson "encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// Row kinds (the `kind` column). Every row also keeps its webhook's action.
const (
	KindThreadStarted     = "thread_started"     // incoming_chat: the new thread itself
	KindEvent             = "event"              // a chat event: incoming_event, or one of the events inside incoming_chat
	KindEventUpdated      = "event_updated"      // event_updated (full new event)
	KindEventDeleted      = "event_deleted"      // event_deleted
	KindPostback          = "postback"           // incoming_rich_message_postback
	KindThreadClosed      = "thread_closed"      // chat_deactivated
	KindAccess            = "access"             // chat_access_updated (and 3.3 granted/revoked)
	KindTransfer          = "transfer"           // chat_transferred
	KindUserAdded         = "user_added"         // user_added_to_chat
	KindUserRemoved       = "user_removed"       // user_removed_from_chat
	KindTagAdded          = "tag_added"          // thread_tagged
	KindTagRemoved        = "tag_removed"        // thread_untagged
	KindRating            = "rating"             // *_properties_updated carrying the rating namespace
	KindRatingDeleted     = "rating_deleted"     // *_properties_deleted removing rating properties
	KindPropertiesUpdated = "properties_updated" // other *_properties_updated
	KindPropertiesDeleted = "properties_deleted" // other *_properties_deleted
	KindRoutingStatus     = "routing_status"     // routing_status_set (status normalised to accepting_chats, ...)
	KindSessionFields     = "session_fields"     // customer_session_fields_updated
	KindSeen              = "seen"               // events_marked_as_seen
	KindSummary           = "summary"            // thread_summary_set
	KindCustomerCreated   = "customer_created"   // incoming_customer (3.5 and older)
	KindConfig            = "config"             // agent_*, bot_*, group_*, tag_*, auto_access*
	KindUnknown           = "unknown"            // an action this version does not know: raw payload kept
)

// Directory gives agent and group names for enrichment. The OAuth component
// fills it from the Configuration API. Implementations must answer from
// memory, quickly and without blocking: they are called on the hot path for
// every row. A nil Directory, a panic or "" all mean "no name"; ingestion
// never waits for or fails because of it.
type Directory interface {
	AgentName(organizationID, agentID string) string
	GroupName(organizationID string, groupID uint32) string
}

// Source is what Transform needs from the Kafka record besides its body.
type Source struct {
	Topic      string
	Partition  int32
	Offset     int64
	ReceivedAt time.Time // wire.HeaderReceivedAt, else the record timestamp
	RequestID  string
	BodySHA256 string
	// IngestVersion is the ingest build that wrote the record.
	IngestVersion string
}

// Transform turns a decoded webhook into rows: one row per event, with its
// candidate ID (see identity.go), except incoming_chat, which yields a
// thread_started row and one row per event already in the thread (those
// rows get the IDs incoming_event would give them). users resolves author
// types and learns from incoming_chat and user_added_to_chat; it may be nil
// (ID shapes only). Transform depends on nothing else: same inputs, same rows.
func Transform(src Source, w *livechat.Webhook, users *UserCache, dir Directory) []Row {
	return appendTransform(nil, src, w, users, dir)
}

// appendTransform appends Transform's rows to dst: the processor builds
// its batch in place (a Row is ~850 bytes; a slice per webhook, copied into
// the batch, was a good part of the allocations).
func appendTransform(dst []Row, src Source, w *livechat.Webhook, users *UserCache, dir Directory) []Row {
	t := transformer{src: src, w: w, users: users, dir: dir, org: w.Tenant(), out: dst, first: len(dst)}
	t.rows()
	for i := t.first; i < len(t.out); i++ {
		t.out[i].compact()
	}
	return t.out
}

type transformer struct {
	src   Source
	w     *livechat.Webhook
	users *UserCache
	dir   Directory
	org   string
	canon []byte // canonicalPayload's result
	out   []Row
	first int // index in out of this webhook's first row
}

func (t *transformer) base(kind string) Row {
	recv := uint64(0)
	if !t.src.ReceivedAt.IsZero() && t.src.ReceivedAt.UnixMilli() > 0 {
		recv = uint64(t.src.ReceivedAt.UnixMilli())
	}
	return Row{
		OrganizationID: t.w.OrganizationID, // "" when only the license is known; t.org names the tenant for identity
		LicenseID:      uint64(t.w.LicenseID),
		Action:         t.w.Action,
		Kind:           kind,
		OccurredAtMs:   recv,
		ReceivedAtMs:   recv,
		Payload:        bytesView(t.w.Payload),
		SrcTopic:       t.src.Topic,
		SrcPartition:   t.src.Partition,
		SrcOffset:      t.src.Offset,
		RequestID:      t.src.RequestID,
		BodySHA256:     t.src.BodySHA256,
		IngestVersion:  t.src.IngestVersion,
	}
}

// identified finishes a row with a server identity.
func (t *transformer) identified(r Row, class string, key ...string) {
	r.id = serverID(t.org, class, key...)
	r.EventID = r.id.String()
	r.SrcIndex = uint16(len(t.out) - t.first)
	t.out = append(t.out, r)
}

// subject names one thing state changes apply to, and the state a change
// leaves it in (identity.go).
type subject struct{ key, state string }

func (t *transformer) subject(state string, class string, key ...string) subject {
	return subject{key: subjectOf(t.org, class, key...), state: state}
}

// stateChange finishes a row without a server identity: dedup key from the
// canonical content, ID from the key and the received-at time, and the
// subjects it changes (the processor drops it as a retry only when every
// subject's last kept state is this one, received less than DEDUP_WINDOW
// before). The canonical content is the given fields (the action's natural
// key and state), or, without fields, the payload's canonical JSON.
func (t *transformer) stateChange(r Row, subjects []subject, fields ...string) {
	var content []byte
	if len(fields) > 0 {
		content = []byte(strings.Join(fields, "\x1e"))
	} else {
		content = t.canonicalPayload()
	}
	key := dedupKeyOf(t.org, t.w.Canonical, content)
	r.DedupKey = key.String()
	if len(subjects) == 0 {
		// Never expected (every action names its subjects); the content
		// itself is then the subject.
		subjects = []subject{{key: r.DedupKey, state: ""}}
	}
	r.DedupSubjects = make([]string, len(subjects))
	r.DedupStates = make([]string, len(subjects))
	for i, s := range subjects {
		r.DedupSubjects[i], r.DedupStates[i] = s.key, s.state
	}
	r.id = windowedID(key, r.ReceivedAtMs)
	r.EventID = r.id.String()
	r.SrcIndex = uint16(len(t.out) - t.first)
	t.out = append(t.out, r)
}

// canonicalPayload is the payload's canonical JSON, computed once.
func (t *transformer) canonicalPayload() []byte {
	if t.canon == nil {
		t.canon = canonicalJSON(t.w.Payload)
	}
	return t.canon
}

// configState is the state a configuration webhook leaves its entity in:
// which change, with which content.
func (t *transformer) configState() string {
	return stateOf(t.w.Canonical, string(t.canonicalPayload()))
}

func (t *transformer) rows() {
	if t.w.Action == wire.ActionCanary && t.canary() { // telemetry.go
		return
	}
	switch p := t.w.Body.(type) {
	case *livechat.IncomingChat:
		t.incomingChat(p)
	case *livechat.IncomingEvent:
		r := t.eventRow(KindEvent, p.ChatID, p.ThreadID, &p.Event)
		t.identified(r, "event", p.ChatID, p.Event.ID)
	case *livechat.EventUpdated:
		r := t.eventRow(KindEventUpdated, p.ChatID, p.ThreadID, &p.Event)
		// Edited X, Y, then X again is three events: the content is the
		// event's state, not an identity.
		h := contentHash(p.Event.Raw)
		t.stateChange(r, []subject{t.subject(h, "event_edit", p.ChatID, p.Event.ID)}, p.ChatID, p.Event.ID, h)
	case *livechat.EventDeleted:
		r := t.base(KindEventDeleted)
		r.ChatID, r.ThreadID, r.EventRef = p.ChatID, p.ThreadID, p.EventID
		t.identified(r, "event_deleted", p.ChatID, p.EventID)
	case *livechat.IncomingRichMessagePostback:
		r := t.base(KindPostback)
		r.ChatID, r.ThreadID, r.EventRef = p.ChatID, p.ThreadID, p.EventID
		t.author(&r, p.ChatID, p.UserID)
		r.PostbackID, r.PostbackToggled = p.Postback.ID, b2u(p.Postback.Toggled)
		r.ButtonType, r.ButtonValue = p.Postback.ButtonType, p.Postback.ButtonValue
		// Toggled on, off and on again is three events: a state change of
		// the user's postback, not a server identity.
		t.stateChange(r, []subject{t.subject(boolStr(p.Postback.Toggled), "postback", p.ChatID, p.EventID, p.UserID, p.Postback.ID)},
			p.ChatID, p.EventID, p.UserID, p.Postback.ID, boolStr(p.Postback.Toggled))
	case *livechat.ChatDeactivated:
		r := t.base(KindThreadClosed)
		r.ChatID, r.ThreadID = p.ChatID, p.ThreadID
		t.author(&r, p.ChatID, p.UserID)
		t.identified(r, "thread_closed", p.ChatID, p.ThreadID)
	case *livechat.ChatAccessUpdated:
		t.access(p.ID, p.Access)
	case *livechat.ChatAccessGranted:
		t.access(p.ID, p.Access)
	case *livechat.ChatAccessRevoked:
		t.access(p.ID, p.Access)
	case *livechat.ChatTransferred:
		r := t.base(KindTransfer)
		r.ChatID, r.ThreadID, r.RequesterID, r.Reason = p.ChatID, p.ThreadID, p.RequesterID, p.Reason
		r.TransferGroupIDs, r.TransferAgentIDs = p.TransferredTo.GroupIDs, p.TransferredTo.AgentIDs
		r.GroupIDs, r.GroupNames = t.groups(p.TransferredTo.GroupIDs)
		if len(p.TransferredTo.AgentIDs) > 0 {
			r.AgentID = p.TransferredTo.AgentIDs[0]
			r.AgentName = t.agentName(r.AgentID)
		}
		t.queue(&r, p.Queue)
		fields := []string{p.ChatID, p.ThreadID, p.RequesterID, p.Reason, joinU32(p.TransferredTo.GroupIDs), strings.Join(p.TransferredTo.AgentIDs, ","),
			itoa(int64(r.QueuePosition)), itoa(int64(r.QueueWaitTime)), itoa(int64(r.QueuedAtMs))}
		t.stateChange(r, []subject{t.subject(stateOf(fields...), "transfer", p.ChatID, p.ThreadID)}, fields...)
	case *livechat.UserAddedToChat:
		r := t.base(KindUserAdded)
		r.ChatID, r.ThreadID, r.Reason, r.RequesterID = p.ChatID, p.ThreadID, p.Reason, p.RequesterID
		r.UserType = firstNonEmpty(p.UserType, p.User.Type)
		t.users.learn(t.org, p.ChatID, p.User.ID, r.UserType)
		t.person(&r, p.ChatID, p.User.ID)
		if r.CustomerID != "" {
			t.visit(&r, p.User.CurrentVisit())
		}
		t.stateChange(r, []subject{t.subject(stateOf("added", p.ThreadID, r.UserType, p.Reason, p.RequesterID), "member", p.ChatID, p.User.ID)},
			p.ChatID, p.ThreadID, p.User.ID, r.UserType, p.Reason, p.RequesterID)
	case *livechat.UserRemovedFromChat:
		r := t.base(KindUserRemoved)
		r.ChatID, r.ThreadID, r.Reason, r.RequesterID, r.UserType = p.ChatID, p.ThreadID, p.Reason, p.RequesterID, p.UserType
		t.person(&r, p.ChatID, p.UserID)
		t.stateChange(r, []subject{t.subject(stateOf("removed", p.ThreadID, p.UserType, p.Reason, p.RequesterID), "member", p.ChatID, p.UserID)},
			p.ChatID, p.ThreadID, p.UserID, p.UserType, p.Reason, p.RequesterID)
	case *livechat.ThreadTagged:
		r := t.base(KindTagAdded)
		r.ChatID, r.ThreadID, r.Tag = p.ChatID, p.ThreadID, p.Tag
		t.stateChange(r, []subject{t.subject("+", "tag", p.ChatID, p.ThreadID, p.Tag)}, p.ChatID, p.ThreadID, p.Tag)
	case *livechat.ThreadUntagged:
		r := t.base(KindTagRemoved)
		r.ChatID, r.ThreadID, r.Tag = p.ChatID, p.ThreadID, p.Tag
		t.stateChange(r, []subject{t.subject("-", "tag", p.ChatID, p.ThreadID, p.Tag)}, p.ChatID, p.ThreadID, p.Tag)
	case *livechat.ChatPropertiesUpdated:
		t.propsUpdated(p.ChatID, "", "", p.Properties)
	case *livechat.ThreadPropertiesUpdated:
		t.propsUpdated(p.ChatID, p.ThreadID, "", p.Properties)
	case *livechat.EventPropertiesUpdated:
		t.propsUpdated(p.ChatID, p.ThreadID, p.EventID, p.Properties)
	case *livechat.ChatPropertiesDeleted:
		t.propsDeleted(p.ChatID, "", "", p.Properties)
	case *livechat.ThreadPropertiesDeleted:
		t.propsDeleted(p.ChatID, p.ThreadID, "", p.Properties)
	case *livechat.EventPropertiesDeleted:
		t.propsDeleted(p.ChatID, p.ThreadID, p.EventID, p.Properties)
	case *livechat.RoutingStatusSet:
		r := t.base(KindRoutingStatus)
		r.AgentID, r.AgentName = p.AgentID, t.agentName(p.AgentID)
		r.RoutingStatus = p.NormalizedStatus()
		t.stateChange(r, []subject{t.subject(r.RoutingStatus, "routing_status", p.AgentID)}, p.AgentID, r.RoutingStatus)
	case *livechat.CustomerSessionFieldsUpdated:
		r := t.base(KindSessionFields)
		r.CustomerID, r.ChatID, r.ThreadID = p.ID, p.ActiveChat.ChatID, p.ActiveChat.ThreadID
		r.Properties = marshalString(p.SessionFields)
		t.stateChange(r, []subject{t.subject(stateOf(p.ActiveChat.ThreadID, r.Properties), "session_fields", p.ID, p.ActiveChat.ChatID)},
			p.ID, p.ActiveChat.ChatID, p.ActiveChat.ThreadID, r.Properties)
	case *livechat.EventsMarkedAsSeen:
		r := t.base(KindSeen)
		r.ChatID = p.ChatID
		t.author(&r, p.ChatID, p.UserID)
		if ms, ok := ownTime(p.SeenUpTo); ok {
			r.OccurredAtMs, r.ownTime = ms, true
			t.identified(r, "seen", p.ChatID, p.UserID, p.SeenUpTo.UTC().Format(time.RFC3339Nano))
			return
		}
		// Without seen_up_to a repeat cannot be told from a retry by
		// identity: the user's "seen" is a subject like any state.
		t.stateChange(r, []subject{t.subject("seen", "seen", p.ChatID, p.UserID)}, p.ChatID, p.UserID)
	case *livechat.ThreadSummarySet:
		r := t.base(KindSummary)
		r.ChatID, r.ThreadID = p.ChatID, p.ThreadID
		r.TextLength = uint32(utf8.RuneCountInString(p.Summary.Text))
		if ms, ok := ownTime(p.Summary.UpdatedAt); ok {
			r.OccurredAtMs, r.ownTime = ms, true
			t.identified(r, "summary", p.ChatID, p.ThreadID, p.Summary.UpdatedAt.UTC().Format(time.RFC3339Nano))
			return
		}
		// Without updated_at the summary's text is the thread's state.
		h := stateOf(p.Summary.Text)
		t.stateChange(r, []subject{t.subject(h, "summary", p.ChatID, p.ThreadID)}, p.ChatID, p.ThreadID, h)
	case *livechat.IncomingCustomer:
		r := t.base(KindCustomerCreated)
		r.CustomerID, r.AuthorID, r.AuthorType = p.Customer.ID, p.Customer.ID, "customer"
		if ms, ok := ownTime(p.Customer.CreatedAt); ok {
			r.OccurredAtMs, r.ownTime = ms, true
		}
		t.visit(&r, p.Customer.CurrentVisit())
		t.identified(r, "customer_created", p.Customer.ID)
	case *livechat.TagCreated:
		r := t.config()
		r.Tag = p.Name
		r.GroupIDs, r.GroupNames = t.groups(p.GroupIDs)
		if !p.CreatedAt.IsZero() {
			t.identified(r, "tag_created", p.Name, p.CreatedAt.UTC().Format(time.RFC3339Nano))
			return
		}
		t.stateChange(r, []subject{t.subject(t.configState(), "tag_config", p.Name)})
	case *livechat.TagUpdated:
		r := t.config()
		r.Tag = p.Name
		r.GroupIDs, r.GroupNames = t.groups(p.GroupIDs)
		t.stateChange(r, []subject{t.subject(t.configState(), "tag_config", p.Name)})
	case *livechat.TagDeleted:
		r := t.config()
		r.Tag = p.Name
		t.stateChange(r, []subject{t.subject(t.configState(), "tag_config", p.Name)})
	case *livechat.AgentCreated:
		t.configAgent(p.ID, groupIDs(p.Groups))
	case *livechat.AgentUpdated:
		t.configAgent(p.ID, groupIDs(p.Groups))
	case *livechat.AgentApproved:
		t.configAgent(p.ID, nil)
	case *livechat.AgentSuspended:
		t.configAgent(p.ID, nil)
	case *livechat.AgentUnsuspended:
		t.configAgent(p.ID, nil)
	case *livechat.AgentDeleted:
		t.configAgent(p.ID, nil)
	case *livechat.BotCreated:
		t.configAgent(p.ID, groupIDs(p.Groups))
	case *livechat.BotUpdated:
		t.configAgent(p.ID, groupIDs(p.Groups))
	case *livechat.BotDeleted:
		t.configAgent(p.ID, nil)
	case *livechat.GroupCreated:
		t.configGroup(p.ID)
	case *livechat.GroupUpdated:
		t.configGroup(p.ID)
	case *livechat.GroupDeleted:
		t.configGroup(p.ID)
	case *livechat.AutoAccessesUpdated:
		// The whole list of rules is the organization's state.
		t.stateChange(t.config(), []subject{t.subject(t.configState(), "auto_accesses")})
	case *livechat.AutoAccessAdded:
		t.stateChange(t.config(), []subject{t.subject(t.configState(), "auto_access", p.ID)})
	case *livechat.AutoAccessUpdated:
		t.stateChange(t.config(), []subject{t.subject(t.configState(), "auto_access", p.ID)})
	case *livechat.AutoAccessDeleted:
		t.stateChange(t.config(), []subject{t.subject(t.configState(), "auto_access", p.ID)})
	default: // *livechat.Unknown and anything new
		// Nothing says what an unknown action changes: its entity (when the
		// payload names one) is the subject, its whole content the state.
		t.stateChange(t.base(KindUnknown), []subject{t.subject(stateOf(string(t.canonicalPayload())), "unknown", t.w.Action, unknownEntity(t.w.Payload))})
	}
}

func (t *transformer) incomingChat(p *livechat.IncomingChat) {
	c := &p.Chat
	th := c.Thread
	if th == nil && len(c.Threads) > 0 {
		th = &c.Threads[0]
	}
	if th == nil {
		th = &livechat.Thread{}
	}
	for i := range c.Users {
		t.users.learn(t.org, c.ID, c.Users[i].ID, c.Users[i].Type)
	}
	r := t.base(KindThreadStarted)
	r.ChatID, r.ThreadID = c.ID, th.ID
	if ms, ok := ownTime(th.CreatedAt); ok {
		r.OccurredAtMs, r.ThreadCreatedAtMs, r.ownTime = ms, ms, true
	}
	r.ThreadActive = b2u(th.Active)
	r.Continuous = b2u(th.Properties.Bool("routing", "continuous") || c.Properties.Bool("routing", "continuous"))
	r.GreetingID = firstNonEmpty(th.Properties.String("lc2", "greeting_id"), th.Properties.String("lc2", "greeting_unique_id"))
	r.StartURL = th.Properties.String("routing", "start_url")
	r.Referrer = th.Properties.String("routing", "referrer")
	r.Tags = th.Tags
	access := th.Access
	if access == nil {
		access = c.Access
	}
	if access != nil {
		r.GroupIDs, r.GroupNames = t.groups(access.GroupIDs)
	}
	t.queue(&r, th.Queue)
	t.rating(&r, th.Properties)
	var customer *livechat.User
	for i := range c.Users {
		u := &c.Users[i]
		switch {
		case u.Type == "customer" && customer == nil:
			customer = u
		case u.Type == "agent" && r.AgentID == "":
			r.AgentID = u.ID
		}
	}
	r.AgentName = t.agentName(r.AgentID)
	if customer != nil {
		r.CustomerID = customer.ID
		t.visit(&r, customer.CurrentVisit())
	}
	if th.CustomerVisit != nil {
		t.visit(&r, th.CustomerVisit) // the thread's own visit wins
	}
	if r.Referrer == "" && customer != nil && customer.CurrentVisit() != nil {
		r.Referrer = customer.CurrentVisit().Referrer
	}
	r.Properties = marshalString(th.Properties)
	t.identified(r, "thread_started", c.ID, th.ID)

	for i := range th.Events {
		ev := &th.Events[i]
		er := t.eventRow(KindEvent, c.ID, th.ID, ev)
		if er.CustomerID == "" {
			er.CustomerID = r.CustomerID
		}
		t.identified(er, "event", c.ID, ev.ID)
	}
}

func (t *transformer) eventRow(kind, chatID, threadID string, ev *livechat.Event) Row {
	r := t.base(kind)
	r.ChatID, r.ThreadID = chatID, threadID
	r.EventRef, r.EventType = ev.ID, ev.Type
	if ms, ok := ownTime(ev.CreatedAt); ok {
		r.OccurredAtMs, r.ownTime = ms, true
	}
	r.Visibility = firstNonEmpty(ev.Visibility, ev.Recipients)
	r.IsWelcome = b2u(ev.IsWelcome())
	r.TextLength = uint32(utf8.RuneCountInString(ev.Text))
	r.SystemMessageType = ev.SystemMessageType
	r.FormType = firstNonEmpty(ev.FormType, ev.Properties.String("lc2", "form_type"))
	if ev.Type == "system_message" || ev.Type == "system" {
		r.AuthorID, r.AuthorType = ev.AuthorID, "system"
	} else {
		t.author(&r, chatID, ev.AuthorID)
	}
	if ev.Postback != nil {
		r.PostbackID, r.ButtonType, r.ButtonValue = ev.Postback.ID, ev.Postback.Type, ev.Postback.Value
	}
	t.rating(&r, ev.Properties)
	if len(ev.Properties) > 0 {
		r.Properties = marshalString(ev.Properties)
	}
	r.Payload = bytesView(ev.Raw)
	return r
}

// author sets author_id/author_type and the agent or customer column.
func (t *transformer) author(r *Row, chatID, userID string) {
	r.AuthorID = userID
	r.AuthorType = t.users.authorType(t.org, chatID, userID)
	switch r.AuthorType {
	case "agent", "bot":
		r.AgentID, r.AgentName = userID, t.agentName(userID)
	case "customer":
		r.CustomerID = userID
	}
}

// person sets agent_id or customer_id for a user added or removed.
func (t *transformer) person(r *Row, chatID, userID string) {
	typ := r.UserType
	if typ == "" {
		typ = t.users.authorType(t.org, chatID, userID)
	}
	switch typ {
	case "customer":
		r.CustomerID = userID
	case "":
	default:
		r.AgentID, r.AgentName = userID, t.agentName(userID)
	}
}

func (t *transformer) access(chatID string, a livechat.Access) {
	r := t.base(KindAccess)
	r.ChatID = chatID
	r.GroupIDs, r.GroupNames = t.groups(a.GroupIDs)
	groups := joinU32(a.GroupIDs)
	t.stateChange(r, []subject{t.subject(stateOf(t.w.Canonical, groups), "access", chatID)}, chatID, groups)
}

func (t *transformer) propsUpdated(chatID, threadID, eventID string, p livechat.Properties) {
	kind := KindPropertiesUpdated
	if _, ok := p["rating"]; ok {
		kind = KindRating
	}
	r := t.base(kind)
	r.ChatID, r.ThreadID, r.EventRef = chatID, threadID, eventID
	t.rating(&r, p)
	if p.Has("routing", "continuous") {
		r.Continuous = b2u(p.Bool("routing", "continuous"))
	}
	r.Properties = marshalString(p)
	// One subject per property: a webhook that sets two properties is a
	// retry only when both are.
	var subs []subject
	for _, ns := range sortedKeys(p) {
		for _, name := range sortedKeys(p[ns]) {
			subs = append(subs, t.subject(stateOf("set", string(canonicalJSON(p[ns][name]))), "property", chatID, threadID, eventID, ns, name))
		}
	}
	t.stateChange(r, subs, chatID, threadID, eventID, r.Properties)
}

func (t *transformer) propsDeleted(chatID, threadID, eventID string, p livechat.DeletedProperties) {
	kind := KindPropertiesDeleted
	if _, ok := p["rating"]; ok {
		kind = KindRatingDeleted
	}
	r := t.base(kind)
	r.ChatID, r.ThreadID, r.EventRef = chatID, threadID, eventID
	r.Properties = marshalString(p)
	var subs []subject
	for _, ns := range sortedKeys(p) {
		names := append([]string(nil), p[ns]...)
		sort.Strings(names)
		for _, name := range names {
			subs = append(subs, t.subject("deleted", "property", chatID, threadID, eventID, ns, name))
		}
	}
	t.stateChange(r, subs, chatID, threadID, eventID, r.Properties)
}

func (t *transformer) rating(r *Row, p livechat.Properties) {
	if score, ok := p.Int("rating", "score"); ok {
		r.RatingScore, r.RatingHasScore = int8(score), 1
	}
	if c := p.String("rating", "comment"); c != "" {
		r.RatingComment = c
	}
}

func (t *transformer) queue(r *Row, q *livechat.Queue) {
	if q == nil {
		return
	}
	r.QueuePosition, r.QueueWaitTime, r.QueuedAtMs = int32(q.Position), int32(q.WaitTime), q.QueuedAtMilli()
}

func (t *transformer) visit(r *Row, v *livechat.Visit) {
	if v == nil {
		return
	}
	if g := v.Geolocation; g != nil {
		r.CustomerCountry, r.CustomerCountryCode, r.CustomerCity = g.Country, g.CountryCode, g.City
	}
	if r.Referrer == "" {
		r.Referrer = v.Referrer
	}
}

func (t *transformer) config() Row {
	r := t.base(KindConfig)
	if t.w.Requester != nil {
		r.RequesterID = t.w.Requester.UserID
	}
	return r
}

func (t *transformer) configAgent(id string, groups []uint32) {
	r := t.config()
	r.AgentID, r.AgentName = id, t.agentName(id)
	r.GroupIDs, r.GroupNames = t.groups(groups)
	t.stateChange(r, []subject{t.subject(t.configState(), "agent", id)})
}

func (t *transformer) configGroup(id uint32) {
	r := t.config()
	r.GroupIDs, r.GroupNames = t.groups([]uint32{id})
	t.stateChange(r, []subject{t.subject(t.configState(), "group", strconv.FormatUint(uint64(id), 10))})
}

func (t *transformer) agentName(id string) (name string) {
	if t.dir == nil || id == "" {
		return ""
	}
	defer func() {
		if recover() != nil {
			name = ""
		}
	}()
	return t.dir.AgentName(t.org, id)
}

func (t *transformer) groups(ids []uint32) ([]uint32, []string) {
	if len(ids) == 0 {
		return nil, nil
	}
	names := make([]string, len(ids))
	if t.dir != nil {
		for i, id := range ids {
			names[i] = t.groupName(id)
		}
	}
	return ids, names
}

func (t *transformer) groupName(id uint32) (name string) {
	defer func() {
		if recover() != nil {
			name = ""
		}
	}()
	return t.dir.GroupName(t.org, id)
}

func groupIDs(gs []livechat.GroupPriority) []uint32 {
	if len(gs) == 0 {
		return nil
	}
	out := make([]uint32, len(gs))
	for i, g := range gs {
		out[i] = g.ID
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// bytesView is b as a string without copying; Transform's compact step
// copies it into the row's own buffer before Transform returns.
func bytesView(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func marshalString(v any) string {
	b, err := stdjson.Marshal(v)
	if err != nil || string(b) == "null" {
		return ""
	}
	return string(b)
}

func joinU32(v []uint32) string {
	var sb strings.Builder
	for i, x := range v {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatUint(uint64(x), 10))
	}
	return sb.String()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// ShapeType guesses a user's type from the ID shapes LiveChat uses: agents
// log in with e-mail addresses, bots have 32-hex IDs, customers UUIDs.
// It returns "" when the shape says nothing.
func ShapeType(id string) string {
	switch {
	case id == "":
		return ""
	case strings.Contains(id, "@"):
		return "agent"
	case isHex(id, 32):
		return "bot"
	case isUUID(id):
		return "customer"
	}
	return ""
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func isUUID(s string) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	return isHex(s[0:8]+s[9:13]+s[14:18]+s[19:23]+s[24:], 32)
}

// maxDateTimeMs is the end of ClickHouse's DateTime (2106-02-07 06:28:15
// UTC): a time past it would wrap around when stored.
const maxDateTimeMs = uint64(1<<32-1) * 1000

// ownTime is an event's own time (from the payload) in epoch ms, when it is
// one ClickHouse can store (1970 to 2106). Anything else — absent, zero, or
// nonsense like year 0001 or 9999 — is not the event's time: the row falls
// back to its received-at and keeps the payload as sent.
func ownTime(t livechat.Time) (uint64, bool) {
	ms := t.UnixMilli()
	if ms == 0 || ms >= maxDateTimeMs {
		return 0, false
	}
	return ms, true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// unknownEntity is the entity an unknown action's payload names, if any:
// the first of chat_id, thread_id, id, agent_id, customer.id present.
func unknownEntity(payload []byte) string {
	var v struct {
		ChatID   string             `json:"chat_id"`
		ThreadID string             `json:"thread_id"`
		ID       stdjson.RawMessage `json:"id"`
		AgentID  string             `json:"agent_id"`
		Customer struct {
			ID string `json:"id"`
		} `json:"customer"`
	}
	if len(payload) == 0 || payload[0] != '{' || stdjson.Unmarshal(payload, &v) != nil {
		return ""
	}
	return firstNonEmpty(v.ChatID, v.ThreadID, string(v.ID), v.AgentID, v.Customer.ID)
}
