// Package livechat holds the typed form of LiveChat webhooks (Agent Chat /
// Configuration API v3.6, plus the 3.5 incoming_customer payload and the
// older action names) and Decode, the one place where a raw body becomes Go
// values. Everything past Decode works on these structs, never on
// map[string]any: a field LiveChat renames breaks here, in one golden test,
// and not in a dashboard weeks later.
//
// Decoding is tolerant by design: unknown fields are ignored (the raw JSON is
// kept beside the typed value), unknown actions decode to *Unknown, and loose
// scalars (a geolocation latitude as number or string) are accepted. Decode
// fails only when the body is not a JSON object, has no action or tenant
// (organization_id, or license_id for v3.3 bodies), or a known action's
// payload has the wrong JSON types: that record is poison and belongs in
// the dead-letter topic.
//
// The envelope's secret_key is deliberately not decoded: no value produced
// here can leak it into a log line or a table.
package livechat

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"

	json "github.com/goccy/go-json"
)

// Envelope is the common part of every chat and configuration webhook.
type Envelope struct {
	WebhookID string `json:"webhook_id,omitempty"`
	Action    string `json:"action"`
	// OrganizationID is the tenant (v3.4+). A v3.3 body carries LicenseID
	// instead: it is then "" unless UseOrganization set the organization
	// ingest found for the license. Tenant names either.
	OrganizationID string `json:"organization_id,omitempty"`
	// LicenseID is the v3.3 tenant (license_id), 0 when absent.
	LicenseID License         `json:"license_id,omitempty"`
	Payload   json.RawMessage `json:"payload,omitempty"`
	// Data is the pre-3.1 name of Payload.
	Data           json.RawMessage `json:"data,omitempty"`
	Requester      *Requester      `json:"requester,omitempty"`
	AdditionalData *AdditionalData `json:"additional_data,omitempty"`
}

// Tenant returns the organization, or "license:<n>" for a v3.3 body whose
// organization is unknown (the same text as wire.LicenseTenant).
func (e *Envelope) Tenant() string {
	if e.OrganizationID != "" {
		return e.OrganizationID
	}
	if e.LicenseID != 0 {
		return "license:" + strconv.FormatInt(int64(e.LicenseID), 10)
	}
	return ""
}

// UseOrganization sets the organization of a body that names none (v3.3
// bodies carry only license_id): the one ingest found holding the license,
// from the record's wire.HeaderOrganization. An organization_id in the body
// always wins; "" changes nothing.
func (e *Envelope) UseOrganization(organizationID string) {
	if e.OrganizationID == "" {
		e.OrganizationID = organizationID
	}
}

// License is a LiveChat license number, the tenant of v3.3 webhooks: a JSON
// integer or, defensively, a string of digits; null and "" decode to 0.
// Anything else (a fraction, a sign, zero, an object) fails the envelope.
// Ingest (parseEnvelope) accepts exactly the same values, so a record it
// stored never dead-letters here for its license.
type License int64

// ErrLicense is the decode error of a malformed license_id.
var ErrLicense = errors.New("license_id is not a positive integer (a JSON number, or a string of digits)")

// UnmarshalJSON implements json.Unmarshaler.
func (l *License) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	digits := b
	switch {
	case isNull(b):
		*l = 0
		return nil
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("%w: %v", ErrLicense, err)
		}
		if s == "" {
			*l = 0
			return nil
		}
		digits = []byte(s)
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: %.40s", ErrLicense, b)
		}
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("%w: %.40s", ErrLicense, b)
	}
	*l = License(n)
	return nil
}

// Requester is who made a configuration change (v3.6+, configuration webhooks).
type Requester struct {
	UserID    string `json:"user_id,omitempty"`
	AccountID string `json:"account_id,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
}

// AdditionalData holds the extras requested at registration.
type AdditionalData struct {
	ChatProperties      Properties `json:"chat_properties,omitempty"`
	ChatPresenceUserIDs []string   `json:"chat_presence_user_ids,omitempty"`
}

// Webhook is a decoded delivery: the envelope and the typed payload.
type Webhook struct {
	Envelope
	// Canonical is the v3.6 name of Action: equal to Action except for the
	// older names decoded with their modern payload type (thread_closed →
	// chat_deactivated, ...; see CanonicalAction).
	Canonical string `json:"canonical_action"`
	// Body points to the action's payload struct (see Actions), or to
	// *Unknown for an action this package does not know.
	Body any `json:"body"`
}

// DecodeError says why a body cannot be decoded. Its Stage is "envelope"
// or "payload".
type DecodeError struct {
	Stage  string
	Action string
	Err    error
}

func (e *DecodeError) Error() string {
	if e.Action != "" {
		return fmt.Sprintf("livechat: decode %s of %q: %v", e.Stage, e.Action, e.Err)
	}
	return fmt.Sprintf("livechat: decode %s: %v", e.Stage, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// ErrNoAction and ErrNoTenant are validation failures of the envelope.
var (
	ErrNoAction = errors.New("no action")
	ErrNoTenant = errors.New("no organization_id (nor license_id)")
)

// Decode parses a webhook body (as ingest stored it) into a Webhook. Errors
// are *DecodeError. The body must stay unmodified while the Webhook is used:
// raw parts (payload, event JSON) point into it.
func Decode(body []byte) (*Webhook, error) {
	w := &Webhook{}
	var env decodedEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, &DecodeError{Stage: "envelope", Err: err}
	}
	w.Envelope = Envelope(env.envelope)
	w.Payload, w.Data = json.RawMessage(env.Payload), json.RawMessage(env.Data)
	if w.Action == "" {
		return nil, &DecodeError{Stage: "envelope", Err: ErrNoAction}
	}
	if w.Tenant() == "" {
		return nil, &DecodeError{Stage: "envelope", Action: w.Action, Err: ErrNoTenant}
	}
	if len(w.Payload) == 0 && len(w.Data) > 0 {
		w.Payload, w.Data = w.Data, nil
	}
	w.Canonical = CanonicalAction(w.Action)
	spec, ok := actions[w.Canonical]
	if !ok {
		w.Body = &Unknown{Raw: w.Payload}
		return w, nil
	}
	v, err := spec.decode(w.Payload)
	if err != nil {
		return nil, &DecodeError{Stage: "payload", Action: w.Action, Err: err}
	}
	w.Body = v
	return w, nil
}

// decodedEnvelope is Envelope as Decode reads it: the payload is kept in
// the buffer the decoder hands to UnmarshalJSON, which goccy/go-json
// allocates for it alone (a copy of the value, never a view of the body),
// instead of being copied once more. Payload and Data shadow the
// embedded fields.
type decodedEnvelope struct {
	envelope
	Payload ownedRaw `json:"payload,omitempty"`
	Data    ownedRaw `json:"data,omitempty"`
}

type envelope Envelope

// ownedRaw is a json.RawMessage that takes the decoder's bytes without a
// copy; only for decoders that pass a private copy (goccy/go-json does,
// TestDecodeOwnsPayload checks it).
type ownedRaw []byte

// UnmarshalJSON implements json.Unmarshaler.
func (r *ownedRaw) UnmarshalJSON(b []byte) error {
	*r = b
	return nil
}

// isNull reports an absent or JSON-null payload.
func isNull(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) == 0 || bytes.Equal(b, []byte("null"))
}

// Time is an RFC 3339 time as LiveChat sends it (microseconds, UTC). It
// accepts null and "" as the zero time, so an absent optional timestamp does
// not make a whole webhook poison.
type Time struct{ time.Time }

// UnmarshalJSON implements json.Unmarshaler.
func (t *Time) UnmarshalJSON(b []byte) error {
	if isNull(b) || bytes.Equal(b, []byte(`""`)) {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if n := len(b); n >= 2 && b[0] == '"' && b[n-1] == '"' && bytes.IndexByte(b[1:n-1], '\\') < 0 {
		// The usual case, read in place: time.Parse keeps nothing of s,
		// and a time per event field is otherwise two copies of garbage.
		s = unsafe.String(&b[1], n-2)
	} else {
		u, err := strconv.Unquote(string(b))
		if err != nil {
			return fmt.Errorf("time %s: not a string", b)
		}
		s = u
	}
	p, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		s = strings.Clone(s) // the error keeps it
		_, err = time.Parse(time.RFC3339Nano, s)
		return fmt.Errorf("time %q: %w", s, err)
	}
	t.Time = p.UTC()
	return nil
}

// MarshalJSON writes RFC 3339 with microseconds, or null for the zero time.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + t.UTC().Format("2006-01-02T15:04:05.000000Z07:00") + `"`), nil
}

// UnixMilli is the time in epoch milliseconds, 0 for the zero time.
func (t Time) UnixMilli() uint64 {
	if t.IsZero() || t.Time.UnixMilli() < 0 {
		return 0
	}
	return uint64(t.Time.UnixMilli())
}

// Loose is a scalar that LiveChat sends sometimes as a string and sometimes
// as a number or boolean (geolocation coordinates, property values).
type Loose string

// UnmarshalJSON implements json.Unmarshaler.
func (l *Loose) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case isNull(b):
		*l = ""
	case b[0] == '"':
		s, err := strconv.Unquote(string(b))
		if err != nil {
			var u string
			if err := json.Unmarshal(b, &u); err != nil {
				return err
			}
			s = u
		}
		*l = Loose(s)
	case b[0] == '{' || b[0] == '[':
		return fmt.Errorf("expected a scalar, got %.20s", b)
	default:
		*l = Loose(b)
	}
	return nil
}

// Properties are namespaced chat, thread or event properties:
// namespace → name → raw JSON value. Use the typed accessors.
type Properties map[string]map[string]json.RawMessage

// Has reports whether the namespace holds the property.
func (p Properties) Has(ns, name string) bool {
	_, ok := p[ns][name]
	return ok
}

// String returns a string property ("" when absent or not a string).
func (p Properties) String(ns, name string) string {
	raw, ok := p[ns][name]
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// Bool returns a boolean property (false when absent; "true" strings count).
func (p Properties) Bool(ns, name string) bool {
	raw, ok := p[ns][name]
	if !ok {
		return false
	}
	switch strings.Trim(strings.TrimSpace(string(raw)), `"`) {
	case "true", "1":
		return true
	}
	return false
}

// Int returns an integer property and whether it was present and numeric
// (numeric strings count).
func (p Properties) Int(ns, name string) (int64, bool) {
	raw, ok := p[ns][name]
	if !ok {
		return 0, false
	}
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return int64(f), true
	}
	return 0, false
}

// DeletedProperties lists deleted properties: namespace → names.
type DeletedProperties map[string][]string

// Access is a chat's or thread's group access; group 0 means all agents.
type Access struct {
	GroupIDs []uint32 `json:"group_ids"`
}
