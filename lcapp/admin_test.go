package lcapp

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/lcpipe/lcpipe/internal/lcfake"
)

const agentAccount = "5f1c9a7e-2b3d-4c5e-8f9a-0b1c2d3e4f5a"

// withAgent adds a normal agent of testOrg and, as LiveChat might (the
// docs' invalid_scope rule is the only guard), lets every role be granted
// the app's administrator-level scopes.
func withAgent(f *lcfake.Config, _ *Config) { f.AnyRoleGetsAdminScopes = true }

func addAgent(h *harness) {
	h.fake.AddUser(lcfake.User{AccountID: agentAccount, OrganizationID: testOrg, LicenseID: 104130623, Role: "normal", Email: "agent@example.com"})
}

// csrfOf takes the Disconnect form's token from the confirmation page.
func csrfOf(t *testing.T, body string) string {
	t.Helper()
	i := strings.Index(body, `name="csrf" value="`)
	if i < 0 {
		t.Fatalf("no Disconnect form on the page:\n%s", body)
	}
	v := body[i+len(`name="csrf" value="`):]
	return v[:strings.IndexByte(v, '"')]
}

// Sign-in checks with LiveChat that the user administers the organization
// (owner, vice owner or administrator in list_agents) before anything is
// stored: a normal agent who gets through LiveChat's authorization neither
// replaces the installation's tokens nor gets a Disconnect button.
func TestSignInRequiresAdministrator(t *testing.T) {
	h := newHarness(t, withAgent)
	addAgent(h)
	if _, body := h.signIn(h.browser); !strings.Contains(body, `id="confirmation"`) {
		t.Fatalf("the owner's sign-in failed:\n%s", body)
	}
	before, _ := h.app.store.loadInstallation(testOrg)

	h.fake.SignIn(agentAccount)
	agent := newBrowser(t)
	resp, body := h.signIn(agent)
	if resp.StatusCode != http.StatusForbidden || strings.Contains(body, `id="confirmation"`) || !strings.Contains(body, "administrator") {
		t.Errorf("a normal agent's sign-in: %d\n%s", resp.StatusCode, body)
	}
	after, _ := h.app.store.loadInstallation(testOrg)
	if after == nil || after.AccountID != testAccount || after.AccessToken != before.AccessToken {
		t.Errorf("a normal agent's sign-in replaced the installation's tokens")
	}
	resp, err := agent.PostForm(h.base+UninstallPath, url.Values{"csrf": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := h.app.Status(testOrg); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a normal agent's Disconnect: %d, installation: %v", resp.StatusCode, err)
	}
}

// Without a way to confirm the role (the app lacks agents--all:ro, so
// list_agents is refused) sign-in fails closed.
func TestSignInFailsClosedWithoutRole(t *testing.T) {
	h := newHarness(t, func(f *lcfake.Config, _ *Config) {
		f.Scopes = []string{"webhooks.configuration:rw", "webhooks.state:rw", "groups--all:ro"}
	})
	resp, body := h.signIn(h.browser)
	if resp.StatusCode == http.StatusOK || !strings.Contains(body, "could not confirm") {
		t.Errorf("sign-in without a way to check the role: %d\n%s", resp.StatusCode, body)
	}
	assertNothingStored(t, h)
}

// Disconnect checks again: an administrator demoted since signing in
// cannot remove the organization's installation.
func TestDisconnectRequiresAdministrator(t *testing.T) {
	h := newHarness(t)
	_, body := h.signIn(h.browser)
	csrf := csrfOf(t, body)
	h.fake.SetRole(testAccount, "normal")
	resp, err := h.browser.PostForm(h.base+UninstallPath, url.Values{"csrf": {csrf}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("Disconnect by a demoted user: %d, want 403", resp.StatusCode)
	}
	if _, err := h.app.Status(testOrg); errors.Is(err, ErrNotInstalled) {
		t.Fatal("a demoted user disconnected the organization")
	}
	h.fake.SetRole(testAccount, "viceowner")
	resp, err = h.browser.PostForm(h.base+UninstallPath, url.Values{"csrf": {csrf}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := h.app.Status(testOrg); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("a vice owner could not disconnect: %d %v", resp.StatusCode, err)
	}
}
