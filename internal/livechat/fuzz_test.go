package livechat

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode feeds Decode arbitrary bodies, seeded with every fixture
// (testdata/*.json, a copy of the shared LiveChat fixtures, and the
// per-version bodies under testdata/v3.*). Whatever the input, Decode must
// not panic, must not modify the body, and must be deterministic (the same
// webhook or the same error twice). What it accepts from a valid JSON
// document must name the action and organization encoding/json reads, a
// tenant, and a typed body that matches the action: the processor builds
// identities on those guarantees.
func FuzzDecode(f *testing.F) {
	for _, pattern := range []string{"testdata/*.json", "testdata/v3.*/*.json"} {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(`{"action":"incoming_event","license_id":"104130623","payload":{"chat_id":"C","event":{"id":"E","type":"message"}}}`))
	f.Add([]byte(`{"action":"brand_new","organization_id":"o","payload":[1,2,{"a":null}]}`))
	f.Add([]byte(`{"action":"incoming_chat","organization_id":"o","data":{"chat":{"id":"C"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		// Only what the pipeline can deliver: ingest stores a body only if
		// json.Valid accepts it (validJSON, FuzzValidJSON). Two findings of
		// this target concern other bodies, both in goccy/go-json, which
		// Decode uses:
		//   - it accepts malformed values of unknown fields ({"":{{}}},
		//     testdata/fuzz/FuzzDecode/05b9ff651ff66110, bb5de8a6962e12cf);
		//   - on a key cut short after a backslash ({"\) it reads past the
		//     end of its buffer and, depending on the memory there, panics
		//     (60faf6e1ed994f01). The processor dead-letters a record whose
		//     decoding panics (decodeSafely, TestDecodeOfBrokenEscape).
		if !stdjson.Valid(body) {
			return
		}
		orig := bytes.Clone(body)
		w, err := Decode(body)
		if !bytes.Equal(body, orig) {
			t.Fatal("Decode modified the body")
		}
		w2, err2 := Decode(body)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("not deterministic: %v / %v", err, err2)
		}
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Stage == "" {
				t.Fatalf("error is not a *DecodeError with a stage: %T %v", err, err)
			}
			return
		}
		a, errA := stdjson.Marshal(w)
		b, errB := stdjson.Marshal(w2)
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Fatalf("two decodes differ (%v %v):\n%s\n%s", errA, errB, a, b)
		}
		// The processor must read the action and tenant encoding/json
		// reads: ingest routed and authenticated on those
		// (FuzzParseEnvelope checks ingest against encoding/json).
		var std struct {
			Action         string `json:"action"`
			OrganizationID string `json:"organization_id"`
		}
		if stdjson.Unmarshal(body, &std) != nil {
			return // a field of another type: ingest refuses that body (400)
		}
		if strings.ContainsRune(std.Action+std.OrganizationID, utf8.RuneError) {
			// Second finding of this target: invalid UTF-8 (or a lone
			// surrogate escape) in these names is U+FFFD for encoding/json
			// and raw bytes for Decode. Ingest refuses such bodies (400,
			// TestParseEnvelope "invalid UTF-8 ..." cases).
			return
		}
		if std.Action != w.Action || std.OrganizationID != w.OrganizationID {
			t.Fatalf("encoding/json reads action %q organization %q, Decode %q %q", std.Action, std.OrganizationID, w.Action, w.OrganizationID)
		}
		if w.Action == "" || w.Tenant() == "" || w.Canonical != CanonicalAction(w.Action) {
			t.Fatalf("accepted without action or tenant: %+v", w.Envelope)
		}
		if w.Body == nil {
			t.Fatal("decoded without a body")
		}
		if _, known := actions[w.Canonical]; known == isUnknown(w.Body) {
			t.Fatalf("action %q decoded to %T", w.Action, w.Body)
		}
	})
}

func isUnknown(v any) bool { _, ok := v.(*Unknown); return ok }
