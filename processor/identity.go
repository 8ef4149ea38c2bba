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
// Two classes (see identityOf for the table per action):
//
//   - Server identity: the payload names the event (thread id, event id,
//     postback id, seen_up_to, summary time, ...). ID = H(org, class, natural
//     key). Any later record with the same ID is a duplicate, forever.
//   - Windowed (state changes without identity: tags, properties, routing
//     status, transfers, users added/removed, access, configuration
//     webhooks, unknown actions). dedup_key = H(org, action, canonical
//     content). The canonical content is the action's key and state fields
//     (transform.go lists them per action: e.g. chat, thread and tag for
//     thread_tagged; agent and normalised status for routing_status_set;
//     ids and the properties as key-sorted JSON for *_properties_*), and for
//     configuration and unknown actions the payload JSON with object keys
//     sorted and whitespace removed. additional_data is never part of it (it
//     can change between retries). A record is a duplicate
//     when a kept event with the same dedup_key was received less than the
//     window (DEDUP_WINDOW, default 10m) before or after it; otherwise it is
//     kept with ID = H(dedup_key, received-at in ms). A genuine repeat after
//     the window is therefore a new event, and a replay of the kept record
//     gets the same ID (and falls in its own window).
//
// H is SHA-256 truncated to 128 bits, hex (32 characters). Inputs are
// joined with a 0x1f separator and prefixed with a version so a future
// change of rules cannot collide with stored IDs.

type eventID [16]byte

func (id eventID) String() string { return hex.EncodeToString(id[:]) }

const idVersion = "lc1"

func hashParts(parts ...string) eventID {
	h := sha256.New()
	h.Write([]byte(idVersion))
	for _, p := range parts {
		h.Write([]byte{0x1f})
		h.Write([]byte(p))
	}
	var sum [32]byte
	h.Sum(sum[:0])
	var id eventID
	copy(id[:], sum[:16])
	return id
}

// serverID is the ID of an event with a server identity.
func serverID(org, class string, key ...string) eventID {
	return hashParts(append([]string{"id", org, class}, key...)...)
}

// dedupKeyOf is the windowed dedup key of a state change.
func dedupKeyOf(org, action string, canonical []byte) eventID {
	return hashParts("w", org, action, string(canonical))
}

// windowedID is the ID of a kept windowed event.
func windowedID(key eventID, receivedMs uint64) eventID {
	return hashParts("wid", key.String(), strconv.FormatUint(receivedMs, 10))
}

// canonicalJSON re-encodes raw JSON with sorted object keys and no
// whitespace; numbers keep their literal form. Invalid JSON (which cannot
// reach here: Decode validated it) falls back to the compacted bytes.
func canonicalJSON(raw []byte) []byte {
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
