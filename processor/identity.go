package processor

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	stdjson "encoding/json"
	"strconv"

	json "github.com/goccy/go-json"
)

// Event identity: every stored row carries event_id, a pure function of the
// record (organization, action, payload, received-at header), so replaying
// the topic produces the same IDs and the same drop decisions.
//
// Two classes (see the table in processor/README.md):
//
//   - Server identity: the payload names the event (thread id, event id,
//     seen_up_to, summary time, ...). ID = H(org, class, natural key). Any
//     later record with the same ID is a duplicate, forever.
//   - State changes (tags, properties, routing status, transfers, users
//     added/removed, access, configuration webhooks, postbacks, event edits,
//     unknown actions). Each names the subjects it changes (subjectOf: an
//     agent's routing status, one tag on one thread, one property of a
//     chat, ...) and the state it leaves each in (stateOf). It is a retry,
//     and dropped, only when for every subject the last kept change before
//     it had the same state and was received less than DEDUP_WINDOW
//     (default 2m) before it (dedup.go says what "before" is). Otherwise it
//     is kept with ID = H(dedup_key, received-at in ms), where dedup_key =
//     H(org, action, canonical content). So accepting, not accepting,
//     accepting is three events; the same body again with nothing between
//     is one; a replay of a kept record gets the same ID.
//     additional_data is never part of the content (it may change between
//     retries).
//
// H is SHA-256 truncated to 128 bits, hex (32 characters). Inputs are
// joined with a 0x1f separator and prefixed with a version so a future
// change of rules cannot collide with stored IDs.

type eventID [16]byte

func (id eventID) String() string { return hex.EncodeToString(id[:]) }

const idVersion = "lc1"

// hashParts is H over the parts. The input is joined in a buffer on the
// stack (inputs are short: ids, names, a canonical payload at most a few
// KiB spills to the heap once), so an ID costs one SHA-256 and no garbage:
// the processor computes several per event.
func hashParts(parts ...string) eventID {
	var st [512]byte
	b := append(st[:0], idVersion...)
	for _, p := range parts {
		b = appendPart(b, p)
	}
	return sumID(b)
}

func appendPart(b []byte, p string) []byte {
	b = append(b, 0x1f)
	return append(b, p...)
}

func sumID(b []byte) eventID {
	sum := sha256.Sum256(b)
	return eventID(sum[:16])
}

// hashKeyed is hashParts(tag, org, class, key...) without building the
// slice of parts.
func hashKeyed(tag, org, class string, key []string) eventID {
	var st [512]byte
	b := append(st[:0], idVersion...)
	b = appendPart(b, tag)
	b = appendPart(b, org)
	b = appendPart(b, class)
	for _, k := range key {
		b = appendPart(b, k)
	}
	return sumID(b)
}

// serverID is the ID of an event with a server identity.
func serverID(org, class string, key ...string) eventID {
	return hashKeyed("id", org, class, key)
}

// dedupKeyOf is the windowed dedup key of a state change.
func dedupKeyOf(org, action string, canonical []byte) eventID {
	var st [1024]byte
	b := append(st[:0], idVersion...)
	b = appendPart(b, "w")
	b = appendPart(b, org)
	b = appendPart(b, action)
	b = append(b, 0x1f)
	b = append(b, canonical...)
	return sumID(b)
}

// subjectOf names one subject of state changes.
func subjectOf(org, class string, key ...string) string {
	return hashKeyed("s", org, class, key).String()
}

// stateOf is a short hash of the state a change leaves its subject in
// (64 bits: it is only compared with the states of the same subject).
func stateOf(parts ...string) string {
	var st [512]byte
	b := append(st[:0], idVersion...)
	b = appendPart(b, "st")
	for _, p := range parts {
		b = appendPart(b, p)
	}
	id := sumID(b)
	return hex.EncodeToString(id[:8])
}

// windowedID is the ID of a kept state change.
func windowedID(key eventID, receivedMs uint64) eventID {
	var st [128]byte
	b := append(st[:0], idVersion...)
	b = appendPart(b, "wid")
	b = append(b, 0x1f)
	b = hex.AppendEncode(b, key[:])
	b = append(b, 0x1f)
	b = strconv.AppendUint(b, receivedMs, 10)
	return sumID(b)
}

// canonicalJSON re-encodes raw JSON with sorted object keys and no
// whitespace; numbers keep their literal form. Invalid JSON (which cannot
// reach here: Decode validated it) falls back to the compacted bytes.
func canonicalJSON(raw []byte) []byte {
	if out, ok := appendCanonical(make([]byte, 0, len(raw)), raw); ok {
		return out
	}
	return canonicalSlow(raw)
}

// canonicalSlow is canonicalJSON through a generic decode and encode: the
// definition the fast path (canonical.go) must match, and its fallback.
func canonicalSlow(raw []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		var buf bytes.Buffer
		if stdjson.Compact(&buf, raw) != nil {
			return raw
		}
		return buf.Bytes()
	}
	// goccy/go-json sorts object keys like encoding/json (tested).
	out, err := json.Marshal(v)
	if err != nil {
		return raw
	}
	return out
}

// contentHash is a short hash of an event's canonical JSON (event_updated).
func contentHash(raw []byte) string {
	sum := sha256.Sum256(canonicalJSON(raw))
	return hex.EncodeToString(sum[:8])
}
