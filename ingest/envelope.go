package ingest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// envelope is what ingest needs from a webhook body: the fields that route
// and authenticate it, the position of the secret so it can be blanked
// without re-encoding the body, and the entity that keys the record.
type envelope struct {
	Action string
	// OrganizationID is the body's organization_id (v3.4+), "" when absent,
	// null or empty.
	OrganizationID string
	// LicenseID is the body's license_id (v3.3 bodies carry it instead of
	// organization_id), 0 when absent or null.
	LicenseID int64
	// SecretKey is the top-level secret_key when it is a JSON string.
	SecretKey string
	HasSecret bool
	// secretStart and secretEnd delimit the secret_key value in the body,
	// quotes included, so blanking replaces exactly those bytes.
	secretStart, secretEnd int
	// Entity is what the event is about (chat id, else agent/customer/
	// group id), "" when none applies; see entityOf.
	Entity string
}

// Envelope errors: every one of them answers 400.
var (
	errNotJSON      = errors.New("body is not valid JSON")
	errNotObject    = errors.New("body is not a JSON object")
	errAction       = errors.New("action is missing or not a non-empty string")
	errOrganization = errors.New("organization_id is not a string")
	errLicense      = errors.New("license_id is not a positive integer (a JSON number, or a string of digits)")
	errTenant       = errors.New("organization_id is missing or empty and there is no license_id: the body names no LiveChat organization or license")
	errNotUTF8      = errors.New("action and organization_id must be valid UTF-8")
)

// The top-level fields ingest reads; each may appear once.
const (
	fieldAction = iota
	fieldOrganization
	fieldLicense
	fieldSecret
)

var envelopeFields = [...]string{
	fieldAction:       "action",
	fieldOrganization: "organization_id",
	fieldLicense:      "license_id",
	fieldSecret:       "secret_key",
}

// parseEnvelope reads the top-level fields of a webhook body. It walks the
// bytes instead of decoding into a struct because it must know where the
// secret sits (to blank it in place) and must not care about the shape of
// the payload (unknown actions and new fields are stored as they are).
//
// The tenant is organization_id (v3.4+) or license_id (v3.3, a JSON
// integer; a string of digits is accepted too); a body needs one of them and
// may carry both (organization_id then routes, the license is kept).
//
// Field names are matched like encoding/json would see them after
// unescaping; a second "action"/"organization_id"/"license_id"/"secret_key",
// or one spelled with another letter case (which encoding/json would also
// map onto the field), is rejected as ambiguous: what ingest verified and
// routed on must be what the processor decodes.
func parseEnvelope(body []byte) (envelope, error) {
	var env envelope
	if !validJSON(body) {
		return env, errNotJSON
	}
	start := skipWS(body, 0)
	if start >= len(body) || body[start] != '{' {
		return env, errNotObject
	}
	var seen [len(envelopeFields)]bool
	var payload []byte
	err := members(body, start, func(key []byte, vs, ve int) error {
		v := body[vs:ve]
		i := slices.Index(envelopeFields[:], string(key))
		if i < 0 {
			if string(key) == "payload" {
				payload = v
				return nil
			}
			for _, f := range envelopeFields {
				if strings.EqualFold(string(key), f) {
					return fmt.Errorf("ambiguous field %q", key)
				}
			}
			return nil
		}
		if seen[i] {
			return fmt.Errorf("duplicate field %q", key)
		}
		seen[i] = true
		switch i {
		case fieldAction:
			env.Action = stringValue(v)
		case fieldOrganization:
			if v[0] != '"' && !isNull(v) {
				return errOrganization
			}
			env.OrganizationID = stringValue(v)
		case fieldLicense:
			id, err := licenseValue(v)
			if err != nil {
				return err
			}
			env.LicenseID = id
		case fieldSecret:
			if v[0] == '"' {
				env.SecretKey, env.HasSecret = stringValue(v), true
			}
			env.secretStart, env.secretEnd = vs, ve
		}
		return nil
	})
	if err != nil {
		return envelope{}, err
	}
	if env.Action == "" {
		return envelope{}, errAction
	}
	// Invalid UTF-8 (or an escaped lone surrogate) becomes U+FFFD here, as
	// in encoding/json, but the processor's decoder keeps the raw bytes:
	// the two would name different actions or organizations (found by
	// FuzzDecode). LiveChat never sends such names.
	if strings.ContainsRune(env.Action, utf8.RuneError) || strings.ContainsRune(env.OrganizationID, utf8.RuneError) {
		return envelope{}, errNotUTF8
	}
	if env.OrganizationID == "" && env.LicenseID == 0 {
		return envelope{}, errTenant
	}
	if !seen[fieldSecret] {
		env.secretStart, env.secretEnd = -1, -1
	}
	env.Entity = entityOf(env.Action, payload)
	return env, nil
}

// blankSecret returns the body with the value of the top-level secret_key
// replaced by "" and every other byte unchanged. Without a secret_key it
// returns a copy of body.
func (env *envelope) blankSecret(body []byte) []byte {
	if env.secretStart < 0 {
		return append([]byte(nil), body...)
	}
	out := make([]byte, 0, len(body)-(env.secretEnd-env.secretStart)+2)
	out = append(out, body[:env.secretStart]...)
	out = append(out, '"', '"')
	return append(out, body[env.secretEnd:]...)
}

// entityOf picks what the event is about, for the record key: the chat when
// the payload names one (so all events of a chat stay in one partition, in
// order), else the agent, customer or group, else "" (the organization).
func entityOf(action string, payload []byte) string {
	if len(payload) == 0 || payload[0] != '{' {
		return "" // absent, null, or auto_accesses_updated's array
	}
	var chat, id, agent, customer string
	_ = members(payload, 0, func(key []byte, vs, ve int) error {
		v := payload[vs:ve]
		switch string(key) {
		case "chat_id":
			if chat == "" {
				chat = stringValue(v)
			}
		case "chat":
			if c := memberString(v, "id"); c != "" {
				chat = c
			}
		case "active_chat":
			if chat == "" {
				chat = memberString(v, "chat_id")
			}
		case "id":
			id = scalarValue(v)
		case "agent_id":
			agent = stringValue(v)
		case "customer":
			customer = memberString(v, "id")
		}
		return nil
	})
	if action == "chat_access_updated" && chat == "" {
		chat = id
	}
	for _, e := range [...]string{chat, agent, customer, id} {
		if e != "" {
			return e
		}
	}
	return ""
}

// licenseValue decodes a license_id: a JSON integer or a string of digits,
// positive and within int64; null and "" mean none (0). Anything else
// (fraction, exponent, sign, object...) is errLicense, so the processor's
// decoder (livechat.License), which follows the same rules, never sees a
// license ingest did not.
func licenseValue(v []byte) (int64, error) {
	digits := v
	switch {
	case isNull(v):
		return 0, nil
	case v[0] == '"':
		s := stringValue(v)
		if s == "" {
			return 0, nil
		}
		digits = []byte(s)
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, errLicense
		}
	}
	id, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil || id <= 0 {
		return 0, errLicense
	}
	return id, nil
}

func isNull(v []byte) bool { return string(v) == "null" }

// memberString returns the string member key of the object v, or "".
func memberString(v []byte, key string) string {
	if len(v) == 0 || v[0] != '{' {
		return ""
	}
	var out string
	_ = members(v, 0, func(k []byte, vs, ve int) error {
		if string(k) == key {
			out = stringValue(v[vs:ve])
		}
		return nil
	})
	return out
}

// stringValue decodes a JSON string token; "" for any other token.
func stringValue(v []byte) string {
	if len(v) < 2 || v[0] != '"' {
		return ""
	}
	inner := v[1 : len(v)-1]
	// Fast path; otherwise decode like encoding/json would (escapes,
	// invalid UTF-8 becomes U+FFFD) so header and processor agree.
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner)
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}

// scalarValue is a string's text or a number's digits; "" otherwise.
func scalarValue(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if v[0] == '"' {
		return stringValue(v)
	}
	if v[0] == '-' || (v[0] >= '0' && v[0] <= '9') {
		return string(v)
	}
	return ""
}

// members calls fn for each member of the object starting at b[start]
// (which must be '{'), with the unescaped key and the value's span. b must
// be valid JSON (validJSON), which keeps this scanner small.
func members(b []byte, start int, fn func(key []byte, vs, ve int) error) error {
	i := skipWS(b, start+1)
	if i < len(b) && b[i] == '}' {
		return nil
	}
	for i < len(b) {
		ks := i
		ke := skipString(b, ks)
		key := b[ks+1 : ke-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var s string
			if err := json.Unmarshal(b[ks:ke], &s); err != nil {
				return errNotJSON
			}
			key = []byte(s)
		}
		i = skipWS(b, ke)
		i = skipWS(b, i+1) // ':'
		vs := i
		ve := skipValue(b, vs)
		if err := fn(key, vs, ve); err != nil {
			return err
		}
		i = skipWS(b, ve)
		if i >= len(b) || b[i] == '}' {
			return nil
		}
		i = skipWS(b, i+1) // ','
	}
	return nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] ('"').
func skipString(b []byte, i int) int {
	j := i + 1
	for {
		if j = skipPlain(b, j); j >= len(b) {
			return len(b)
		}
		if b[j] == '"' {
			return j + 1
		}
		j += 2 // an escape ('\\' and the byte after it); valid JSON has no control bytes
	}
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			if j = skipToBracketOrQuote(b, j); j >= len(b) {
				break
			}
			switch b[j] {
			case '"':
				j = skipString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		return j
	}
}

// skipToBracketOrQuote returns the index of the first byte at or after j
// that is '"', '{', '}', '[' or ']', or len(b); eight bytes per step like
// skipPlain (the bodies are often indented: most bytes are none of these).
// '[' and ']' differ from '{' and '}' only in bit 0x20, and no other byte
// becomes '{' or '}' when that bit is set.
func skipToBracketOrQuote(b []byte, j int) int {
	for ; j+8 <= len(b); j += 8 {
		x := binary.LittleEndian.Uint64(b[j:])
		y := x | 0x20*lsb
		q := x ^ ('"' * lsb)
		o := y ^ ('{' * lsb)
		c := y ^ ('}' * lsb)
		m := (q-lsb)&^q | (o-lsb)&^o | (c-lsb)&^c
		if m &= msb; m != 0 {
			return j + bits.TrailingZeros64(m)/8
		}
	}
	for ; j < len(b); j++ {
		switch b[j] {
		case '"', '{', '}', '[', ']':
			return j
		}
	}
	return j
}
