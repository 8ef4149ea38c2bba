package processor

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/wire"
)

// identityRecord is the raw-topic record ingest would write for body.
func identityRecord(body []byte, receivedAt time.Time, requestID string, partition int32, offset int64) *kgo.Record {
	sum := sha256.Sum256(body)
	return &kgo.Record{
		Topic:     "livechat.webhooks.raw",
		Partition: partition,
		Offset:    offset,
		Key:       []byte("k"),
		Value:     body,
		Timestamp: receivedAt,
		Headers: []kgo.RecordHeader{
			{Key: wire.HeaderReceivedAt, Value: []byte(wire.FormatTime(receivedAt))},
			{Key: wire.HeaderRequestID, Value: []byte(requestID)},
			{Key: wire.HeaderBodySHA256, Value: []byte(hex.EncodeToString(sum[:]))},
			{Key: wire.HeaderOrganization, Value: []byte("org-from-ingest")},
			{Key: wire.HeaderIngestVersion, Value: []byte("fuzz")},
		},
	}
}

// identityOf is what event identity consists of for one row.
type identityOf struct {
	EventID, DedupKey       string
	DedupSubjects, DedupSts []string
}

func identities(rows []Row) []identityOf {
	out := make([]identityOf, len(rows))
	for i, r := range rows {
		out[i] = identityOf{r.EventID, r.DedupKey, r.DedupSubjects, r.DedupStates}
	}
	return out
}

// FuzzEventIdentity checks the properties exactly-once rests on (identity.go)
// for any body the decoder accepts, seeded with every LiveChat fixture:
//
//   - deterministic: decoding and transforming the same record twice gives
//     the same rows;
//   - a replay (the same record read again, at another partition or offset,
//     as after a rewind or a rebuild from the topic) gets the same IDs;
//   - a retry (LiveChat sending the same body again: another request id,
//     another received-at) gets the same event ID for every event with a
//     server identity, and for a state change the same dedup key, subjects
//     and states — so the de-duplication drops it within the window — and
//     an ID that differs only through received-at.
func FuzzEventIdentity(f *testing.F) {
	for _, pattern := range []string{"../internal/livechat/testdata/*.json", "../internal/livechat/testdata/v3.*/*.json"} {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b, int64(1_767_225_600_000), int64(90_000))
		}
	}
	f.Add([]byte(`{"action":"thread_tagged","license_id":104130623,"payload":{"chat_id":"C","thread_id":"T","tag":"x"}}`), int64(0), int64(-1))
	f.Fuzz(func(t *testing.T, body []byte, receivedMs, retryDelayMs int64) {
		if !json.Valid(body) {
			return // ingest stores nothing else (see FuzzDecode in internal/livechat)
		}
		recv := time.UnixMilli(receivedMs % 4_102_444_800_000).UTC() // up to 2100
		retryAt := recv.Add(time.Duration(retryDelayMs%3_600_000) * time.Millisecond)
		first := identityRecord(body, recv, "req-1", 2, 1000)

		w, err := decodeRecord(first, nil)
		if _, err2 := decodeRecord(first, nil); (err == nil) != (err2 == nil) {
			t.Fatalf("decode not deterministic: %v / %v", err, err2)
		}
		if err != nil {
			return // a dead letter, always
		}
		rows := Transform(sourceOf(first), w, nil, nil)

		// Deterministic.
		w2, _ := decodeRecord(first, nil)
		if again := Transform(sourceOf(first), w2, nil, nil); !reflect.DeepEqual(rows, again) {
			t.Fatalf("the same record transformed twice differs:\n%+v\n%+v", identities(rows), identities(again))
		}
		for _, r := range rows {
			if r.EventID == "" || len(r.EventID) != 32 {
				t.Fatalf("row without an event ID: %+v", r)
			}
		}

		// Replay at another position.
		replay := identityRecord(body, recv, "req-1", 5, 77)
		wr, err := decodeRecord(replay, nil)
		if err != nil {
			t.Fatalf("replay does not decode: %v", err)
		}
		if got := identities(Transform(sourceOf(replay), wr, nil, nil)); !reflect.DeepEqual(got, identities(rows)) {
			t.Fatalf("replay got other identities:\n%+v\n%+v", got, identities(rows))
		}

		// Retry by LiveChat.
		retry := identityRecord(body, retryAt, "req-2", 2, 1001)
		wt, err := decodeRecord(retry, nil)
		if err != nil {
			t.Fatalf("retry does not decode: %v", err)
		}
		retried := Transform(sourceOf(retry), wt, nil, nil)
		if len(retried) != len(rows) {
			t.Fatalf("retry gives %d rows, first delivery %d", len(retried), len(rows))
		}
		for i, r := range rows {
			q := retried[i]
			if r.DedupKey == "" {
				if q.EventID != r.EventID || q.DedupKey != "" {
					t.Fatalf("row %d (%s %s): server identity changed on retry: %s → %s", i, r.Action, r.Kind, r.EventID, q.EventID)
				}
				continue
			}
			if q.DedupKey != r.DedupKey || !slices.Equal(q.DedupSubjects, r.DedupSubjects) || !slices.Equal(q.DedupStates, r.DedupStates) {
				t.Fatalf("row %d (%s %s): state change identity changed on retry:\n%+v\n%+v", i, r.Action, r.Kind, identities(rows)[i], identities(retried)[i])
			}
			if want := windowedID(dedupKeyID(q), q.ReceivedAtMs).String(); q.EventID != want {
				t.Fatalf("row %d: retry's ID is not windowedID(dedup key, received-at)", i)
			}
			if (q.ReceivedAtMs == r.ReceivedAtMs) != (q.EventID == r.EventID) {
				t.Fatalf("row %d: ID and received-at disagree: %d/%d, %s/%s", i, r.ReceivedAtMs, q.ReceivedAtMs, r.EventID, q.EventID)
			}
		}
	})
}

// dedupKeyID parses a row's dedup key back into an eventID.
func dedupKeyID(r Row) eventID {
	var k eventID
	b, _ := hex.DecodeString(r.DedupKey)
	copy(k[:], b)
	return k
}
