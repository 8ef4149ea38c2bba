package simulate

import (
	"encoding/json"
	"time"
)

// The types below are the shapes of LiveChat v3.6 webhook bodies that the
// simulator sends (as in the fixtures under internal/livechat/testdata). Only the fields the
// pipeline reads, plus enough realism to exercise its decoders, are filled.

type envelope struct {
	WebhookID      string          `json:"webhook_id"`
	SecretKey      string          `json:"secret_key"`
	Action         string          `json:"action"`
	OrganizationID string          `json:"organization_id"`
	Payload        any             `json:"payload"`
	AdditionalData json.RawMessage `json:"additional_data"`
}

type geolocation struct {
	Country     string `json:"country"`
	CountryCode string `json:"country_code"`
	City        string `json:"city"`
	Timezone    string `json:"timezone"`
}

type visit struct {
	StartedAt   string      `json:"started_at"`
	Referrer    string      `json:"referrer,omitempty"`
	IP          string      `json:"ip"`
	UserAgent   string      `json:"user_agent"`
	Geolocation geolocation `json:"geolocation"`
}

type user struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Name       string `json:"name"`
	Email      string `json:"email,omitempty"`
	Present    bool   `json:"present"`
	Visibility string `json:"visibility,omitempty"`
	Visit      *visit `json:"visit,omitempty"`
}

type formAnswer struct {
	ID    string `json:"id"`
	Label string `json:"label"`
}

type formField struct {
	Type   string `json:"type"`
	ID     string `json:"id"`
	Label  string `json:"label"`
	Answer any    `json:"answer"`
}

type button struct {
	Text       string   `json:"text"`
	Type       string   `json:"type"`
	Value      string   `json:"value"`
	PostbackID string   `json:"postback_id"`
	UserIDs    []string `json:"user_ids"`
}

type element struct {
	Title   string   `json:"title"`
	Buttons []button `json:"buttons"`
}

type event struct {
	ID                string         `json:"id"`
	CustomID          string         `json:"custom_id,omitempty"`
	Type              string         `json:"type"`
	AuthorID          string         `json:"author_id,omitempty"`
	CreatedAt         string         `json:"created_at"`
	Visibility        string         `json:"visibility"`
	Properties        map[string]any `json:"properties,omitempty"`
	Text              string         `json:"text,omitempty"`
	FormID            string         `json:"form_id,omitempty"`
	FormType          string         `json:"form_type,omitempty"`
	Fields            []formField    `json:"fields,omitempty"`
	TemplateID        string         `json:"template_id,omitempty"`
	Elements          []element      `json:"elements,omitempty"`
	SystemMessageType string         `json:"system_message_type,omitempty"`
	Name              string         `json:"name,omitempty"`
	URL               string         `json:"url,omitempty"`
	ContentType       string         `json:"content_type,omitempty"`
}

type queue struct {
	Position int    `json:"position"`
	WaitTime int    `json:"wait_time"`
	QueuedAt string `json:"queued_at"`
}

type access struct {
	GroupIDs []uint32 `json:"group_ids"`
}

type thread struct {
	ID            string         `json:"id"`
	Active        bool           `json:"active"`
	UserIDs       []string       `json:"user_ids"`
	Events        []event        `json:"events"`
	Properties    map[string]any `json:"properties"`
	Access        access         `json:"access"`
	Queue         *queue         `json:"queue,omitempty"`
	CreatedAt     string         `json:"created_at"`
	CustomerVisit *visit         `json:"customer_visit,omitempty"`
}

type chat struct {
	ID         string         `json:"id"`
	Users      []user         `json:"users"`
	Properties map[string]any `json:"properties"`
	Access     access         `json:"access"`
	Thread     thread         `json:"thread"`
}

type incomingChat struct {
	Chat chat `json:"chat"`
}

type incomingEvent struct {
	ChatID   string `json:"chat_id"`
	ThreadID string `json:"thread_id"`
	Event    event  `json:"event"`
}

type chatDeactivated struct {
	ChatID   string `json:"chat_id"`
	ThreadID string `json:"thread_id"`
	UserID   string `json:"user_id,omitempty"`
}

type transferredTo struct {
	GroupIDs []uint32 `json:"group_ids"`
	AgentIDs []string `json:"agent_ids,omitempty"`
}

type chatTransferred struct {
	ChatID        string        `json:"chat_id"`
	ThreadID      string        `json:"thread_id"`
	RequesterID   string        `json:"requester_id"`
	Reason        string        `json:"reason"`
	TransferredTo transferredTo `json:"transferred_to"`
}

type chatAccessUpdated struct {
	ID     string `json:"id"`
	Access access `json:"access"`
}

type userAdded struct {
	ChatID      string `json:"chat_id"`
	ThreadID    string `json:"thread_id"`
	User        user   `json:"user"`
	UserType    string `json:"user_type"`
	Reason      string `json:"reason"`
	RequesterID string `json:"requester_id,omitempty"`
}

type userRemoved struct {
	ChatID      string `json:"chat_id"`
	ThreadID    string `json:"thread_id"`
	UserID      string `json:"user_id"`
	UserType    string `json:"user_type"`
	Reason      string `json:"reason"`
	RequesterID string `json:"requester_id,omitempty"`
}

type threadTag struct {
	ChatID   string `json:"chat_id"`
	ThreadID string `json:"thread_id"`
	Tag      string `json:"tag"`
}

type threadProperties struct {
	ChatID     string         `json:"chat_id"`
	ThreadID   string         `json:"thread_id"`
	Properties map[string]any `json:"properties"`
}

type threadPropertiesDeleted struct {
	ChatID     string              `json:"chat_id"`
	ThreadID   string              `json:"thread_id"`
	Properties map[string][]string `json:"properties"`
}

type chatProperties struct {
	ChatID     string         `json:"chat_id"`
	Properties map[string]any `json:"properties"`
}

type chatPropertiesDeleted struct {
	ChatID     string              `json:"chat_id"`
	Properties map[string][]string `json:"properties"`
}

type postbackBody struct {
	ID          string `json:"id"`
	Toggled     bool   `json:"toggled"`
	ButtonType  string `json:"button_type"`
	ButtonValue string `json:"button_value"`
}

type richPostback struct {
	UserID   string       `json:"user_id"`
	ChatID   string       `json:"chat_id"`
	ThreadID string       `json:"thread_id"`
	EventID  string       `json:"event_id"`
	Postback postbackBody `json:"postback"`
}

type routingStatus struct {
	AgentID string `json:"agent_id"`
	Status  string `json:"status"`
}

// ts formats a time as LiveChat does: RFC 3339 UTC with microseconds.
func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }
