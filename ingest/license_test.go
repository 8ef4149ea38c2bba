package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// asV33 turns a v3.4+ fixture into its LiveChat v3.3 form: license_id (raw
// JSON) instead of organization_id, and the given secret.
func asV33(t testing.TB, body []byte, license, secret string) []byte {
	t.Helper()
	org := []byte(`"organization_id": "` + fixtureOrg + `"`)
	if !bytes.Contains(body, org) {
		t.Fatal("fixture has no organization_id")
	}
	out := bytes.Replace(body, org, []byte(`"license_id": `+license), 1)
	return bytes.Replace(out, []byte(`"secret_key": "test-secret"`), []byte(`"secret_key": `+jsonString(secret)), 1)
}

func jsonString(s string) string { b, _ := json.Marshal(s); return string(b) }

// TestLicenseWebhooks runs ingest on the real Kafka with v3.3 bodies, which
// name a license_id instead of an organization_id: each is authenticated by
// the static secret or by the installation holding the license, stored with
// that organization (when known) and the license in its headers, keyed so a
// chat's events share a partition; the ones that cannot be verified are
// refused and stored nowhere.
func TestLicenseWebhooks(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	cfg := testConfig(t, kcfg)
	cfg.Installations = secretsFunc(func(_ context.Context, org string) ([]string, error) {
		switch org {
		case "org-installed":
			return []string{"installed-secret"}, nil
		case "org-broken":
			return nil, errors.New("token store down")
		}
		return nil, nil
	})
	var mu sync.Mutex
	acceptedOrgs := map[string]int{}
	cfg.OnAccepted = func(org, _ string, _ time.Time) { mu.Lock(); acceptedOrgs[org]++; mu.Unlock() }
	srv := startServer(t, cfg)
	event := fixtures(t)["incoming_event.json"]
	const chat = "RW4T8ZQK2C"

	type want struct {
		org, license, auth, tenant string
	}
	accepted := []struct {
		name string
		body []byte
		want want
	}{
		{"v3.3 installation secret", asV33(t, event, "104130623", "installed-secret"),
			want{"org-installed", "104130623", wire.AuthInstallationSecret, "org-installed"}},
		{"v3.3 license as string", asV33(t, event, `"104130623"`, "installed-secret"),
			want{"org-installed", "104130623", wire.AuthInstallationSecret, "org-installed"}},
		{"v3.3 static secret, license installed", asV33(t, event, "104130623", testSecret),
			want{"org-installed", "104130623", wire.AuthStaticSecret, "org-installed"}},
		{"v3.3 static secret, license unknown", asV33(t, event, "999", testSecret),
			want{"", "999", wire.AuthStaticSecret, "license:999"}},
		{"v3.3 static secret, lookup fails", asV33(t, event, "200", testSecret),
			want{"", "200", wire.AuthStaticSecret, "license:200"}},
		{"v3.4 organization", event, want{fixtureOrg, "", wire.AuthStaticSecret, fixtureOrg}},
		{"both: organization wins", bytes.Replace(event, []byte(`"action"`), []byte(`"license_id": 5, "action"`), 1),
			want{fixtureOrg, "5", wire.AuthStaticSecret, fixtureOrg}},
	}
	byRequest := map[string]want{}
	for _, a := range accepted {
		r := postWebhook(t, srv.url, a.body)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", a.name, r.status, r.body)
		}
		byRequest[r.header.Get("X-Request-ID")] = a.want
	}

	rejected := []struct {
		name        string
		body        []byte
		status      int
		errContains string
	}{
		{"v3.3 license of no installation", asV33(t, event, "999", "installed-secret"), 401, "license_id 999 belongs to no organization"},
		{"v3.3 wrong secret", asV33(t, event, "104130623", "not-the-secret"), 401, "secret_key"},
		{"v3.3 installation lookup fails", asV33(t, event, "200", "whatever"), 503, "retry"},
		{"license_id object", asV33(t, event, `{"id": 1}`, testSecret), 400, "license_id is not a positive integer"},
		{"license_id fraction", asV33(t, event, `104130623.5`, testSecret), 400, "license_id"},
		{"no tenant", asV33(t, event, "null", testSecret), 400, "organization_id is missing"},
	}
	for _, rj := range rejected {
		r := postWebhook(t, srv.url, rj.body)
		var eb errorBody
		if r.status != rj.status || json.Unmarshal(r.body, &eb) != nil || !strings.Contains(eb.Error, rj.errContains) || eb.RequestID == "" {
			t.Errorf("%s: %d %s, want %d with %q", rj.name, r.status, r.body, rj.status, rj.errContains)
		}
	}

	recs := consume(t, kcfg, kcfg.RawTopic, len(accepted), 1500*time.Millisecond)
	if len(recs) != len(accepted) {
		t.Fatalf("topic holds %d records, want the %d accepted", len(recs), len(accepted))
	}
	for _, r := range recs {
		w, ok := byRequest[wire.Header(r, wire.HeaderRequestID)]
		if !ok {
			t.Fatalf("record of unknown request %q", wire.Header(r, wire.HeaderRequestID))
		}
		got := want{wire.Header(r, wire.HeaderOrganization), wire.Header(r, wire.HeaderLicense), wire.Header(r, wire.HeaderAuth), ""}
		got.tenant, _, _ = strings.Cut(string(r.Key), "/")
		if got != w || string(r.Key) != w.tenant+"/"+chat {
			t.Errorf("record %s: %+v key %q, want %+v", wire.Header(r, wire.HeaderRequestID), got, r.Key, w)
		}
		assertNoSecret(t, "record", r.Value)
		if bytes.Contains(r.Value, []byte("installed-secret")) {
			t.Fatal("installation secret stored")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if acceptedOrgs["org-installed"] != 3 || acceptedOrgs[""] != 2 || acceptedOrgs[fixtureOrg] != 2 {
		t.Errorf("OnAccepted organizations %v", acceptedOrgs)
	}
	if st := srv.Stats().Counters; st.Accepted != 7 || st.Unauthorized != 2 || st.BadRequest != 3 || st.InstallationError != 1 {
		t.Errorf("counters %+v", st)
	}
}
