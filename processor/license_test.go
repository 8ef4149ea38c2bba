package processor

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
)

const fixtureOrganization = "3f2b8c1e-9d4a-4e6b-8f1a-2c5d7e9b0a14"

// v33Event is the incoming_event fixture as LiveChat v3.3 sends it
// (license_id instead of organization_id), for event n of its thread.
func v33Event(t testing.TB, n int) []byte {
	t.Helper()
	b := readFixture(t, "incoming_event")
	org := []byte(`"organization_id": "` + fixtureOrganization + `"`)
	if !bytes.Contains(b, org) {
		t.Fatal("fixture has no organization_id")
	}
	b = bytes.Replace(b, org, []byte(`"license_id": 104130623`), 1)
	return bytes.Replace(b, []byte(`"RW4T8ZQK3D_4"`), []byte(`"RW4T8ZQK3D_`+strconv.Itoa(n)+`"`), 1)
}

// TestTransformLicense: a v3.3 row carries its license, and the
// organization ingest found for it when there is one (” otherwise).
func TestTransformLicense(t *testing.T) {
	for _, org := range []string{"", "org-from-license"} {
		w, err := livechat.Decode(v33Event(t, 4))
		if err != nil {
			t.Fatal(err)
		}
		w.UseOrganization(org)
		rows := Transform(goldenSource, w, nil, nil)
		if len(rows) != 1 || rows[0].LicenseID != 104130623 || rows[0].OrganizationID != org || rows[0].EventID == "" {
			t.Fatalf("organization %q: rows %+v", org, rows)
		}
	}
	rows := Transform(goldenSource, decodeFixture(t, "incoming_event"), nil, nil)
	if rows[0].LicenseID != 0 || rows[0].OrganizationID != fixtureOrganization {
		t.Fatalf("v3.4 row: license %d organization %q", rows[0].LicenseID, rows[0].OrganizationID)
	}
}

// TestLicenseRowsStored runs the processor on the real Kafka and ClickHouse
// with records as ingest writes them for a v3.4 body, a v3.3 body whose
// license ingest resolved (organization in the header) and one it could not:
// all three are stored, none dead-lettered, with license_id and
// organization_id filled as far as known.
func TestLicenseRowsStored(t *testing.T) {
	e := newEnv(t)
	at := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	rec := func(body []byte, org, license, reqID string) *kgo.Record {
		h := []kgo.RecordHeader{
			{Key: wire.HeaderReceivedAt, Value: []byte(wire.FormatTime(at))},
			{Key: wire.HeaderRequestID, Value: []byte(reqID)},
			{Key: wire.HeaderAction, Value: []byte("incoming_event")},
			{Key: wire.HeaderOrganization, Value: []byte(org)},
		}
		if license != "" {
			h = append(h, kgo.RecordHeader{Key: wire.HeaderLicense, Value: []byte(license)})
		}
		tenant := org
		if tenant == "" {
			tenant = wire.LicenseTenant(104130623)
		}
		return &kgo.Record{Topic: e.kafka.RawTopic, Key: wire.Key(tenant, "RW4T8ZQK2C"), Value: body, Headers: h}
	}
	cl := testenv.KafkaClient(t, e.kafka)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx,
		rec(readFixture(t, "incoming_event"), fixtureOrganization, "", "v34"),
		rec(v33Event(t, 5), "org-from-license", "104130623", "v33-known"),
		rec(v33Event(t, 6), "", "104130623", "v33-unknown"),
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	p, _ := e.start(t, Config{BatchLinger: 100 * time.Millisecond, InsertLinger: 200 * time.Millisecond})
	waitRows(t, e.conn, e.ch.Database, 3, time.Minute)
	if n := p.Stats().DeadLetters.Load(); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
	want := map[string]struct {
		org     string
		license uint64
	}{
		"v34":         {fixtureOrganization, 0},
		"v33-known":   {"org-from-license", 104130623},
		"v33-unknown": {"", 104130623},
	}
	rows, err := e.conn.Query(context.Background(), "SELECT request_id, organization_id, license_id FROM "+e.ch.Database+".events")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var reqID, org string
		var license uint64
		if err := rows.Scan(&reqID, &org, &license); err != nil {
			t.Fatal(err)
		}
		if w, ok := want[reqID]; !ok || w.org != org || w.license != license {
			t.Errorf("row of %s: organization %q license %d, want %+v", reqID, org, license, w)
		}
		delete(want, reqID)
	}
	if len(want) != 0 {
		t.Errorf("not stored: %v", want)
	}
}
