package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lcpipe/lcpipe/internal/livechat"
)

// fixtures returns the LiveChat webhook fixtures kept in testdata/livechat
// (sample bodies from LiveChat's webhook documentation) by file name.
func fixtures(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "livechat", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures in testdata/livechat: %v", err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

const fixtureOrg = "3f2b8c1e-9d4a-4e6b-8f1a-2c5d7e9b0a14"

// fixtureEntity is the entity each fixture's record must be keyed by.
func fixtureEntity(name string) string {
	switch name {
	case "agent_created.json":
		return "li.wei@example.com"
	case "chat_transferred.queued.json":
		return "RX9M3H6V1P"
	case "group_created.json":
		return "2"
	case "incoming_customer.json":
		return "c7d9e1f3-2a4b-4c6d-8e0f-1a3b5c7d9e2f"
	case "routing_status_set.json":
		return "anna.kowalski@example.com"
	}
	return "RW4T8ZQK2C"
}

func TestParseEnvelopeFixtures(t *testing.T) {
	for name, body := range fixtures(t) {
		t.Run(name, func(t *testing.T) {
			env, err := parseEnvelope(body)
			if err != nil {
				t.Fatal(err)
			}
			if env.OrganizationID != fixtureOrg || env.SecretKey != "test-secret" || !env.HasSecret {
				t.Fatalf("envelope %+v", env)
			}
			if want := strings.SplitN(strings.TrimSuffix(name, ".json"), ".", 2)[0]; env.Action != want {
				t.Fatalf("action %q, want %q", env.Action, want)
			}
			if env.Entity != fixtureEntity(name) {
				t.Fatalf("entity %q, want %q", env.Entity, fixtureEntity(name))
			}
			got := env.blankSecret(body)
			want := bytes.Replace(body, []byte(`"secret_key": "test-secret"`), []byte(`"secret_key": ""`), 1)
			if !bytes.Equal(got, want) {
				t.Fatalf("blanked body differs from the original beyond the secret:\n%s", got)
			}
		})
	}
}

func TestParseEnvelope(t *testing.T) {
	cases := []struct {
		name, body     string
		err            string // substring; "" = success
		entity, secret string
		blanked        string
	}{
		{name: "minimal", body: `{"action":"a","organization_id":"o","secret_key":"s"}`, secret: "s",
			blanked: `{"action":"a","organization_id":"o","secret_key":""}`},
		{name: "escaped secret and key", body: `{"action":"a","organization_id":"o","secret\u005fkey":"s\"x\\"}`, secret: `s"x\`,
			blanked: `{"action":"a","organization_id":"o","secret\u005fkey":""}`},
		{name: "no secret", body: `{"action":"a","organization_id":"o"}`, blanked: `{"action":"a","organization_id":"o"}`},
		{name: "number secret blanked too", body: `{"action":"a","organization_id":"o","secret_key":123}`,
			blanked: `{"action":"a","organization_id":"o","secret_key":""}`},
		{name: "nested secret_key untouched", body: `{"action":"a","organization_id":"o","payload":{"secret_key":"x"},"secret_key":"s"}`,
			secret: "s", blanked: `{"action":"a","organization_id":"o","payload":{"secret_key":"x"},"secret_key":""}`},
		{name: "whitespace", body: " \n{ \"action\" : \"a\" ,\n\"organization_id\":\"o\" , \"secret_key\" :\t\"s\" } ", secret: "s",
			blanked: " \n{ \"action\" : \"a\" ,\n\"organization_id\":\"o\" , \"secret_key\" :\t\"\" } "},
		{name: "chat id", body: `{"action":"a","organization_id":"o","payload":{"chat_id":"C1","agent_id":"x"}}`, entity: "C1"},
		{name: "chat object", body: `{"action":"a","organization_id":"o","payload":{"chat":{"users":[{"id":"u"}],"id":"C2"}}}`, entity: "C2"},
		{name: "chat access id", body: `{"action":"chat_access_updated","organization_id":"o","payload":{"id":"C3"}}`, entity: "C3"},
		{name: "active chat", body: `{"action":"customer_session_fields_updated","organization_id":"o","payload":{"id":"cust","active_chat":{"chat_id":"C4"}}}`, entity: "C4"},
		{name: "agent", body: `{"action":"routing_status_set","organization_id":"o","payload":{"agent_id":"ag","status":"x"}}`, entity: "ag"},
		{name: "customer", body: `{"action":"incoming_customer","organization_id":"o","payload":{"customer":{"id":"cu"}}}`, entity: "cu"},
		{name: "group number", body: `{"action":"group_deleted","organization_id":"o","payload":{"id":17}}`, entity: "17"},
		{name: "array payload", body: `{"action":"auto_accesses_updated","organization_id":"o","payload":[{"id":"r"}]}`, entity: ""},
		{name: "chat id wrong type", body: `{"action":"a","organization_id":"o","payload":{"chat_id":5}}`, entity: ""},
		{name: "unknown fields", body: `{"x":[1,{"y":"}"}],"action":"new_thing","organization_id":"o","z":null}`},
		{name: "malformed", body: `{"action":"a",`, err: "not valid JSON"},
		{name: "empty", body: ``, err: "not valid JSON"},
		{name: "array", body: `[1]`, err: "not a JSON object"},
		{name: "missing action", body: `{"organization_id":"o"}`, err: "action"},
		{name: "empty action", body: `{"action":"","organization_id":"o"}`, err: "action"},
		// Regressions from FuzzDecode: the processor's decoder keeps these
		// bytes, encoding/json (and this scanner) turn them into U+FFFD.
		{name: "invalid UTF-8 action", body: "{\"action\":\"\xff\",\"organization_id\":\"0\"}", err: "UTF-8"},
		{name: "invalid UTF-8 organization", body: "{\"ACtion\":\"0\",\"orgAniZAtion_id\":\"\xa5\"}", err: "ambiguous"},
		{name: "invalid UTF-8 organization, exact names", body: "{\"action\":\"0\",\"organization_id\":\"\xa5\"}", err: "UTF-8"},
		{name: "lone surrogate organization", body: `{"action":"a","organization_id":"\udc00"}`, err: "UTF-8"},
		{name: "invalid UTF-8 secret is no matter", body: "{\"action\":\"a\",\"organization_id\":\"o\",\"secret_key\":\"\xff\"}", secret: "\ufffd",
			blanked: `{"action":"a","organization_id":"o","secret_key":""}`},
		{name: "number action", body: `{"action":1,"organization_id":"o"}`, err: "action"},
		{name: "missing org", body: `{"action":"a"}`, err: "organization_id"},
		{name: "duplicate secret", body: `{"action":"a","organization_id":"o","secret_key":"s","secret_key":"t"}`, err: "duplicate"},
		{name: "case variant secret", body: `{"action":"a","organization_id":"o","Secret_Key":"s"}`, err: "ambiguous"},
		{name: "case variant action", body: `{"action":"a","ACTION":"b","organization_id":"o"}`, err: "ambiguous"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env, err := parseEnvelope([]byte(tc.body))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if env.Entity != tc.entity || env.SecretKey != tc.secret {
				t.Fatalf("entity %q secret %q, want %q %q", env.Entity, env.SecretKey, tc.entity, tc.secret)
			}
			if tc.blanked != "" {
				if got := string(env.blankSecret([]byte(tc.body))); got != tc.blanked {
					t.Fatalf("blanked:\n got %s\nwant %s", got, tc.blanked)
				}
			}
		})
	}
}

// TestParseEnvelopeTenant: organization_id (v3.4+) or license_id (v3.3, an
// integer; defensively a string of digits) names the tenant; bad tenant
// fields are 400s with a clear message.
func TestParseEnvelopeTenant(t *testing.T) {
	cases := []struct {
		name, fields string // fields go after "action":"a"
		org          string
		license      int64
		err          string // substring; "" = success
	}{
		{name: "organization", fields: `"organization_id":"o"`, org: "o"},
		{name: "v3.3 license", fields: `"license_id":104130623`, license: 104130623},
		{name: "license as string", fields: `"license_id":"104130623"`, license: 104130623},
		{name: "license with leading zeros as string", fields: `"license_id":"007"`, license: 7},
		{name: "license and empty organization", fields: `"organization_id":"","license_id":104130623`, license: 104130623},
		{name: "license and null organization", fields: `"organization_id":null,"license_id":104130623`, license: 104130623},
		{name: "both: organization routes, license kept", fields: `"license_id":104130623,"organization_id":"o"`, org: "o", license: 104130623},
		{name: "null license beside organization", fields: `"organization_id":"o","license_id":null`, org: "o"},
		{name: "empty license string beside organization", fields: `"organization_id":"o","license_id":""`, org: "o"},
		{name: "escaped license key", fields: `"license\u005fid":5`, license: 5},
		{name: "largest license", fields: `"license_id":9223372036854775807`, license: 9223372036854775807},
		{name: "neither", fields: `"payload":{}`, err: "organization_id is missing"},
		{name: "empty organization only", fields: `"organization_id":""`, err: "no license_id"},
		{name: "null license only", fields: `"license_id":null`, err: "no license_id"},
		{name: "license object", fields: `"license_id":{"id":1}`, err: "license_id is not a positive integer"},
		{name: "license array", fields: `"license_id":[1]`, err: "license_id"},
		{name: "license bool", fields: `"license_id":true`, err: "license_id"},
		{name: "license fraction", fields: `"license_id":1.5`, err: "license_id"},
		{name: "license exponent", fields: `"license_id":1e3`, err: "license_id"},
		{name: "license negative", fields: `"license_id":-1`, err: "license_id"},
		{name: "license zero", fields: `"license_id":0`, err: "license_id"},
		{name: "license zero string", fields: `"license_id":"0"`, err: "license_id"},
		{name: "license not digits", fields: `"license_id":"12a"`, err: "license_id"},
		{name: "license spaced string", fields: `"license_id":" 12"`, err: "license_id"},
		{name: "license overflow", fields: `"license_id":9223372036854775808`, err: "license_id"},
		{name: "bad license beside organization", fields: `"organization_id":"o","license_id":{}`, err: "license_id"},
		{name: "organization number", fields: `"organization_id":5,"license_id":1`, err: "organization_id is not a string"},
		{name: "duplicate license", fields: `"license_id":1,"license_id":2`, err: "duplicate"},
		{name: "case variant license", fields: `"license_id":1,"License_ID":2`, err: "ambiguous"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env, err := parseEnvelope([]byte(`{"action":"a",` + tc.fields + `,"secret_key":"s"}`))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if env.OrganizationID != tc.org || env.LicenseID != tc.license || env.SecretKey != "s" {
				t.Fatalf("org %q license %d secret %q, want %q %d", env.OrganizationID, env.LicenseID, env.SecretKey, tc.org, tc.license)
			}
		})
	}
}

// TestLicenseAgreesWithProcessor: the processor's decoder (livechat.License)
// takes exactly the license values ingest takes, to the same number, so a
// record ingest stored never dead-letters for its license_id.
func TestLicenseAgreesWithProcessor(t *testing.T) {
	for _, raw := range []string{`104130623`, `"104130623"`, `"007"`, `null`, `""`, `9223372036854775807`,
		`9223372036854775808`, `0`, `"0"`, `-1`, `1.5`, `1e3`, `"12a"`, `" 12"`, `"+12"`, `{}`, `[1]`, `true`, `"\u0031\u0032"`} {
		got, gerr := licenseValue([]byte(raw))
		var want livechat.License
		werr := want.UnmarshalJSON([]byte(raw))
		if (gerr == nil) != (werr == nil) || got != int64(want) {
			t.Errorf("license_id %s: ingest %d, %v; livechat %d, %v", raw, got, gerr, want, werr)
		}
	}
}

// FuzzParseEnvelope checks the hand-written scanner against encoding/json:
// whatever it accepts, encoding/json decodes to the same action,
// organization and secret, and the processor's decoder to the same license;
// the blanked body is valid JSON whose secret_key is "" and is otherwise the
// same document.
func FuzzParseEnvelope(f *testing.F) {
	for _, b := range fixtures(f) {
		f.Add(b)
	}
	// Every LiveChat version's bodies too (v3.3 license_id, legacy names).
	versioned, _ := filepath.Glob("../internal/livechat/testdata/v3.*/*.json")
	for _, p := range versioned {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"action":"a","organization_id":"o","secret\u005fkey":"s"}`))
	f.Add([]byte(`{"action":"a","organization_id":"o","payload":[{"id":1}]}`))
	f.Add([]byte(`{"action":"a","license_id":104130623,"secret_key":"s"}`))
	f.Add([]byte(`{"action":"a","organization_id":"","license_id":"104130623","secret_key":"s"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := parseEnvelope(body)
		var std struct {
			Action         *string         `json:"action"`
			OrganizationID *string         `json:"organization_id"`
			LicenseID      json.RawMessage `json:"license_id"`
			SecretKey      json.RawMessage `json:"secret_key"`
		}
		if errors.Is(err, errLicense) && json.Unmarshal(body, &std) == nil {
			var l livechat.License
			if l.UnmarshalJSON(std.LicenseID) == nil {
				t.Fatalf("ingest rejects license_id %s, livechat takes it", std.LicenseID)
			}
		}
		if err != nil {
			return
		}
		if err := json.Unmarshal(body, &std); err != nil {
			t.Fatalf("scanner accepted what encoding/json rejects: %v", err)
		}
		org := ""
		if std.OrganizationID != nil {
			org = *std.OrganizationID
		}
		if std.Action == nil || *std.Action != env.Action || org != env.OrganizationID {
			t.Fatalf("disagree on action/org: scanner %q/%q", env.Action, env.OrganizationID)
		}
		var lic livechat.License
		if std.LicenseID != nil {
			if err := lic.UnmarshalJSON(std.LicenseID); err != nil {
				t.Fatalf("livechat rejects license_id %s that ingest took: %v", std.LicenseID, err)
			}
		}
		if int64(lic) != env.LicenseID || (org == "" && lic == 0) {
			t.Fatalf("disagree on license: scanner %d, livechat %d (org %q)", env.LicenseID, lic, org)
		}
		if env.HasSecret {
			var s string
			if err := json.Unmarshal(std.SecretKey, &s); err != nil || s != env.SecretKey {
				t.Fatalf("disagree on secret: scanner %q, std %s", env.SecretKey, std.SecretKey)
			}
		}
		blanked := env.blankSecret(body)
		var after struct {
			Action         string          `json:"action"`
			OrganizationID string          `json:"organization_id"`
			SecretKey      json.RawMessage `json:"secret_key"`
		}
		if err := json.Unmarshal(blanked, &after); err != nil {
			t.Fatalf("blanked body is not JSON: %v\n%q", err, blanked)
		}
		if std.SecretKey != nil && string(after.SecretKey) != `""` {
			t.Fatalf("secret survived blanking: %s", after.SecretKey)
		}
		if after.Action != env.Action || after.OrganizationID != env.OrganizationID {
			t.Fatal("blanking changed action or organization")
		}
		// Same document apart from the secret.
		var a, b map[string]any
		if json.Unmarshal(body, &a) == nil && json.Unmarshal(blanked, &b) == nil {
			delete(a, "secret_key")
			delete(b, "secret_key")
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if !bytes.Equal(ja, jb) {
				t.Fatalf("blanking changed more than the secret")
			}
		}
	})
}

// FuzzValidJSON checks validJSON against json.Valid, the definition it
// replaces for speed: both must accept and reject the same inputs.
func FuzzValidJSON(f *testing.F) {
	for _, b := range fixtures(f) {
		f.Add(b)
	}
	for _, s := range validJSONCases {
		if len(s) < 1000 { // the 20 KB nesting-limit cases make minimizing crawl
			f.Add([]byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid = %v", b, got, want)
		}
	})
}

var validJSONCases = []string{
	``, ` `, `{}`, `[]`, ` {} `, `{`, `}`, `[`, `[1,]`, `[,1]`, `{"a":1,}`, `{"a" 1}`, `{"a":}`, `{a:1}`, `{"a":1}{}`,
	`"x"`, `"\u00e9\n\t\"\\\/\b\f\r"`, `"\u12"`, `"\x"`, "\"\x01\"", "\"\x7f\xff\xfe\"", `"abc`, `"abcdefghijklmnop\"qrstuvwxyz"`,
	`0`, `-0`, `01`, `-`, `1.`, `.5`, `1.5e`, `1e+`, `1E-7`, `-12.34e+56`, `+1`, `1 2`, `0x1`,
	`true`, `false`, `null`, `tru`, `nul`, `nulll`, `[true,false,null]`, `{"a":[{"b":{"c":[]}}],"d":"e"}`,
	strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth),
	strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1),
	strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70),
}

func TestValidJSON(t *testing.T) {
	for _, s := range validJSONCases {
		if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("validJSON(%.40q) = %v, json.Valid = %v", s, got, want)
		}
	}
	for name, b := range fixtures(t) {
		if !validJSON(b) {
			t.Errorf("fixture %s rejected", name)
		}
	}
}

// BenchmarkValidJSON compares validJSON with json.Valid on a fixture.
func BenchmarkValidJSON(b *testing.B) {
	body := fixtures(b)["incoming_event.json"]
	for _, v := range []struct {
		name  string
		valid func([]byte) bool
	}{{"validJSON", validJSON}, {"json.Valid", json.Valid}} {
		b.Run(v.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if !v.valid(body) {
					b.Fatal("fixture rejected")
				}
			}
		})
	}
}
