package livechat

import (
	"errors"
	"fmt"
	"testing"
)

// TestDecodeTenant: a v3.3 body names its license (license_id, an integer or
// a string of digits) instead of its organization; UseOrganization adds the
// organization ingest found for it, never over the body's own.
func TestDecodeTenant(t *testing.T) {
	const payload = `"payload":{"chat_id":"C","thread_id":"T","tag":"x"}`
	tests := []struct {
		name, fields string // the envelope's tenant fields
		header       string // the organization ingest put in the record header
		org          string
		license      License
		tenant       string
		err          error // errors.Is target at the envelope stage; nil = success
	}{
		{name: "v3.4 organization", fields: `"organization_id":"o1"`, org: "o1", tenant: "o1"},
		{name: "v3.3 license", fields: `"license_id":104130623`, license: 104130623, tenant: "license:104130623"},
		{name: "v3.3 license as string", fields: `"license_id":"104130623"`, license: 104130623, tenant: "license:104130623"},
		{name: "v3.3 license, organization from the header", fields: `"license_id":104130623`, header: "o2",
			org: "o2", license: 104130623, tenant: "o2"},
		{name: "empty organization and license", fields: `"organization_id":"","license_id":7`, header: "o2", org: "o2", license: 7, tenant: "o2"},
		{name: "both: the body's organization wins", fields: `"organization_id":"o1","license_id":7`, header: "o2",
			org: "o1", license: 7, tenant: "o1"},
		{name: "null license", fields: `"organization_id":"o1","license_id":null`, org: "o1", tenant: "o1"},
		{name: "license object", fields: `"license_id":{"id":7}`, err: ErrLicense},
		{name: "license fraction", fields: `"license_id":7.5`, err: ErrLicense},
		{name: "license zero", fields: `"license_id":0`, err: ErrLicense},
		{name: "no tenant", fields: `"organization_id":""`, err: ErrNoTenant},
		{name: "null license only", fields: `"license_id":null`, err: ErrNoTenant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Decode([]byte(`{"action":"thread_tagged",` + tt.fields + `,` + payload + `}`))
			if tt.err != nil {
				var de *DecodeError
				if !errors.As(err, &de) || de.Stage != "envelope" || !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want an envelope DecodeError wrapping %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w.UseOrganization(tt.header)
			if w.OrganizationID != tt.org || w.LicenseID != tt.license || w.Tenant() != tt.tenant {
				t.Fatalf("org %q license %d tenant %q, want %q %d %q", w.OrganizationID, w.LicenseID, w.Tenant(), tt.org, tt.license, tt.tenant)
			}
			if _, ok := w.Body.(*ThreadTagged); !ok {
				t.Fatalf("body %T", w.Body)
			}
		})
	}
}

// TestOlderActionNames: the v3.3/3.4 and pre-3.3 action names still decode
// to their typed payloads (webhooks.md §6).
func TestOlderActionNames(t *testing.T) {
	for action, wantType := range map[string]string{
		"chat_user_added":      "*livechat.UserAddedToChat",
		"chat_user_removed":    "*livechat.UserRemovedFromChat",
		"customer_created":     "*livechat.IncomingCustomer",
		"chat_access_granted":  "*livechat.ChatAccessGranted",
		"chat_access_revoked":  "*livechat.ChatAccessRevoked",
		"auto_access_added":    "*livechat.AutoAccessAdded",
		"auto_access_updated":  "*livechat.AutoAccessUpdated",
		"auto_access_deleted":  "*livechat.AutoAccessDeleted",
		"incoming_chat_thread": "*livechat.IncomingChat",
		"thread_closed":        "*livechat.ChatDeactivated",
		"agent_status_changed": "*livechat.RoutingStatusSet",
		"agent_deleted":        "*livechat.AgentDeleted",
	} {
		payload := `{"id":"x1","chat_id":"C","thread_id":"T","user":{"id":"u"},"user_id":"u"}`
		if action == "customer_created" {
			payload = `{"customer":{"id":"cust"}}`
		}
		w, err := Decode([]byte(`{"action":"` + action + `","license_id":104130623,"payload":` + payload + `}`))
		if err != nil {
			t.Errorf("%s: %v", action, err)
			continue
		}
		if got := fmt.Sprintf("%T", w.Body); got != wantType {
			t.Errorf("%s decodes to %s, want %s", action, got, wantType)
		}
	}
}
