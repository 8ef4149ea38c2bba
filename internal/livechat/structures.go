package livechat

import json "github.com/goccy/go-json"

// Chat is the Chat object as webhooks carry it (a single Thread); API
// responses carry Threads instead.
type Chat struct {
	ID         string     `json:"id"`
	Users      []User     `json:"users,omitempty"`
	Thread     *Thread    `json:"thread,omitempty"`
	Threads    []Thread   `json:"threads,omitempty"`
	Properties Properties `json:"properties,omitempty"`
	Access     *Access    `json:"access,omitempty"`
	IsFollowed bool       `json:"is_followed,omitempty"`
}

// Thread is one conversation of a chat (LiveChat reports count threads).
type Thread struct {
	ID             string     `json:"id"`
	Active         bool       `json:"active"`
	UserIDs        []string   `json:"user_ids,omitempty"`
	Events         []Event    `json:"events,omitempty"`
	Properties     Properties `json:"properties,omitempty"`
	Access         *Access    `json:"access,omitempty"`
	Tags           []string   `json:"tags,omitempty"`
	Queue          *Queue     `json:"queue,omitempty"`
	QueuesDuration int64      `json:"queues_duration,omitempty"`
	// RestrictedAccess is the reason text the docs describe; the Go SDK
	// models it as a boolean, so true/false decode too (as "true"/"false").
	RestrictedAccess   Loose    `json:"restricted_access,omitempty"`
	PreviousThreadID   string   `json:"previous_thread_id,omitempty"`
	NextThreadID       string   `json:"next_thread_id,omitempty"`
	CreatedAt          Time     `json:"created_at"`
	CustomerVisit      *Visit   `json:"customer_visit,omitempty"`
	Summary            *Summary `json:"summary,omitempty"`
	PreviousAccessible string   `json:"previous_accessible_thread_id,omitempty"`
	NextAccessible     string   `json:"next_accessible_thread_id,omitempty"`
}

// Queue is present while a thread waits in the queue.
type Queue struct {
	Position int64 `json:"position"`
	WaitTime int64 `json:"wait_time"`
	QueuedAt Time  `json:"queued_at"`
	// QueuedAtUS is the 3.5 sample's spelling (epoch microseconds).
	QueuedAtUS int64 `json:"queued_at_us,omitempty"`
}

// QueuedAtMilli is the queue start in epoch milliseconds, from either spelling.
func (q *Queue) QueuedAtMilli() uint64 {
	if q == nil {
		return 0
	}
	if ms := q.QueuedAt.UnixMilli(); ms > 0 {
		return ms
	}
	if q.QueuedAtUS > 0 {
		return uint64(q.QueuedAtUS / 1000)
	}
	return 0
}

// Summary is an AI summary of a thread (3.6+).
type Summary struct {
	Status    string `json:"status,omitempty"`
	Text      string `json:"text,omitempty"`
	UpdatedAt Time   `json:"updated_at"`
}

// Event is any chat event. Fields of all event types are flattened here,
// as LiveChat sends them; Type says which apply.
type Event struct {
	ID         string     `json:"id"`
	CustomID   string     `json:"custom_id,omitempty"`
	Type       string     `json:"type"`
	AuthorID   string     `json:"author_id,omitempty"`
	CreatedAt  Time       `json:"created_at"`
	Visibility string     `json:"visibility,omitempty"`
	Recipients string     `json:"recipients,omitempty"` // before 3.4
	Properties Properties `json:"properties,omitempty"`
	Deleted    bool       `json:"deleted,omitempty"`

	// message
	Text     string         `json:"text,omitempty"`
	Postback *EventPostback `json:"postback,omitempty"`
	// file
	Name            string `json:"name,omitempty"`
	URL             string `json:"url,omitempty"`
	ContentType     string `json:"content_type,omitempty"`
	Size            int64  `json:"size,omitempty"`
	Width           int64  `json:"width,omitempty"`
	Height          int64  `json:"height,omitempty"`
	ThumbnailURL    string `json:"thumbnail_url,omitempty"`
	Thumbnail2xURL  string `json:"thumbnail2x_url,omitempty"`
	AlternativeText string `json:"alternative_text,omitempty"`
	// form, filled_form
	FormID   string      `json:"form_id,omitempty"`
	FormType string      `json:"form_type,omitempty"`
	Fields   []FormField `json:"fields,omitempty"`
	// rich_message
	TemplateID string        `json:"template_id,omitempty"`
	Elements   []RichElement `json:"elements,omitempty"`
	// custom
	Content json.RawMessage `json:"content,omitempty"`
	// system_message
	SystemMessageType string           `json:"system_message_type,omitempty"`
	TextVars          map[string]Loose `json:"text_vars,omitempty"`
	// system
	Source  string `json:"source,omitempty"`
	Subtype string `json:"subtype,omitempty"`
	Version string `json:"version,omitempty"`
	Details string `json:"details,omitempty"`

	// Raw is the event's JSON as received (not re-encoded).
	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the event and keeps its raw bytes.
func (e *Event) UnmarshalJSON(b []byte) error {
	type plain Event
	if err := json.Unmarshal(b, (*plain)(e)); err != nil {
		return err
	}
	// b may be a view into the decoder's buffer: keep a copy.
	e.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// IsWelcome reports the automatic welcome message (lc2.welcome_message).
func (e *Event) IsWelcome() bool { return e.Properties.Bool("lc2", "welcome_message") }

// EventPostback is the postback a message answers.
type EventPostback struct {
	ID        string     `json:"id,omitempty"`
	ThreadID  string     `json:"thread_id,omitempty"`
	EventID   string     `json:"event_id,omitempty"`
	Type      string     `json:"type,omitempty"`
	Value     string     `json:"value,omitempty"`
	Ecommerce *Ecommerce `json:"ecommerce,omitempty"`
}

// Ecommerce identifies a product option in a postback.
type Ecommerce struct {
	ProductID Loose `json:"product_id,omitempty"`
	OptionID  Loose `json:"option_id,omitempty"`
	Quantity  Loose `json:"quantity,omitempty"`
}

// FormField is a field of a form or filled_form. Answer is a string or an
// object {id, label[, group_id]}; it is kept raw.
type FormField struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Label    string          `json:"label,omitempty"`
	Required bool            `json:"required,omitempty"`
	Options  []FormOption    `json:"options,omitempty"`
	Answer   json.RawMessage `json:"answer,omitempty"`
	Answers  json.RawMessage `json:"answers,omitempty"`
}

// FormOption is a choice of a form field.
type FormOption struct {
	ID    string `json:"id"`
	Label string `json:"label"`
}

// RichElement is an element of a rich message.
type RichElement struct {
	Title     string          `json:"title,omitempty"`
	Subtitle  string          `json:"subtitle,omitempty"`
	Image     json.RawMessage `json:"image,omitempty"`
	Buttons   []RichButton    `json:"buttons,omitempty"`
	Ecommerce json.RawMessage `json:"ecommerce,omitempty"`
}

// RichButton is a button of a rich message element.
type RichButton struct {
	Text          string   `json:"text,omitempty"`
	Type          string   `json:"type,omitempty"`
	Value         string   `json:"value,omitempty"`
	WebviewHeight string   `json:"webview_height,omitempty"`
	PostbackID    string   `json:"postback_id,omitempty"`
	UserIDs       []string `json:"user_ids,omitempty"`
	Target        string   `json:"target,omitempty"`
}

// User is an agent, customer or bot as chats carry them (bots appear with
// type agent). Customer-only fields are empty for agents.
type User struct {
	ID             string `json:"id"`
	Type           string `json:"type,omitempty"`
	Name           string `json:"name,omitempty"`
	Email          string `json:"email,omitempty"`
	Avatar         string `json:"avatar,omitempty"`
	Present        bool   `json:"present,omitempty"`
	EventsSeenUpTo Time   `json:"events_seen_up_to"`
	// agent
	Visibility    string `json:"visibility,omitempty"`
	RoutingStatus string `json:"routing_status,omitempty"`
	Permission    string `json:"permission,omitempty"`
	// customer
	CreatedAt     Time               `json:"created_at"`
	EmailVerified bool               `json:"email_verified,omitempty"`
	PhoneNumber   string             `json:"phone_number,omitempty"`
	SessionFields []map[string]Loose `json:"session_fields,omitempty"`
	Visit         *Visit             `json:"visit,omitempty"`
	// LastVisit is the pre-3.6 name of Visit.
	LastVisit                  *Visit              `json:"last_visit,omitempty"`
	Statistics                 *CustomerStatistics `json:"statistics,omitempty"`
	AgentLastEventCreatedAt    Time                `json:"agent_last_event_created_at"`
	CustomerLastEventCreatedAt Time                `json:"customer_last_event_created_at"`
	Followed                   bool                `json:"followed,omitempty"`
	Online                     bool                `json:"online,omitempty"`
	State                      string              `json:"state,omitempty"`
	GroupIDs                   []uint32            `json:"group_ids,omitempty"`
}

// CurrentVisit returns Visit, or LastVisit for pre-3.6 payloads.
func (u *User) CurrentVisit() *Visit {
	if u.Visit != nil {
		return u.Visit
	}
	return u.LastVisit
}

// Visit is a customer's website visit.
type Visit struct {
	StartedAt   Time         `json:"started_at"`
	EndedAt     Time         `json:"ended_at"`
	Referrer    string       `json:"referrer,omitempty"`
	IP          string       `json:"ip,omitempty"`
	UserAgent   string       `json:"user_agent,omitempty"`
	Geolocation *Geolocation `json:"geolocation,omitempty"`
	LastPages   []Page       `json:"last_pages,omitempty"`
}

// Geolocation of a visit.
type Geolocation struct {
	Country     string `json:"country,omitempty"`
	CountryCode string `json:"country_code,omitempty"`
	Region      string `json:"region,omitempty"`
	City        string `json:"city,omitempty"`
	Timezone    string `json:"timezone,omitempty"`
	Latitude    Loose  `json:"latitude,omitempty"`
	Longitude   Loose  `json:"longitude,omitempty"`
}

// Page is a page a customer opened.
type Page struct {
	OpenedAt Time   `json:"opened_at"`
	URL      string `json:"url,omitempty"`
	Title    string `json:"title,omitempty"`
}

// CustomerStatistics are per-customer totals.
type CustomerStatistics struct {
	ChatsCount             int64 `json:"chats_count"`
	ThreadsCount           int64 `json:"threads_count"`
	VisitsCount            int64 `json:"visits_count"`
	PageViewsCount         int64 `json:"page_views_count"`
	GreetingsShownCount    int64 `json:"greetings_shown_count"`
	GreetingsAcceptedCount int64 `json:"greetings_accepted_count"`
	TicketsCount           int64 `json:"tickets_count,omitempty"`
}
