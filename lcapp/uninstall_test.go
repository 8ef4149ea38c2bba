package lcapp

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/lcfake"
)

// clock is an adjustable clock for the app (the fake keeps its own).
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }

func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.off += d; c.mu.Unlock() }

func withClock(c *clock) harnessOpt { return func(_ *lcfake.Config, cfg *Config) { cfg.Now = c.now } }

// A forged application_uninstalled never removes an installation, whatever
// the state of its tokens: only LiveChat rejecting an access token that has
// not expired (what an uninstall does: it revokes the app's tokens) confirms
// it. A token already rejected, or rejected at refresh, cannot tell an
// uninstall from a revoked grant, so the event is ignored.
func TestForgedUninstallIgnoredWhateverTokenState(t *testing.T) {
	tests := []struct {
		name  string
		state func(t *testing.T, h *harness, c *clock)
	}{
		{"valid token", func(*testing.T, *harness, *clock) {}},
		{"access token expired, refresh works", func(_ *testing.T, h *harness, c *clock) {
			c.advance(9 * time.Hour)
			h.fake.Advance(9 * time.Hour)
		}},
		{"installation needs re-authorization", func(t *testing.T, h *harness, c *clock) {
			// LiveChat rejected the grant earlier (revoked in the user's
			// account); the app is still installed and delivering.
			h.fake.RevokeTokens(testOrg)
			c.advance(9 * time.Hour)
			h.fake.Advance(9 * time.Hour)
			if _, _, err := h.app.Webhooks(ctxT(t), testOrg); !errors.Is(err, ErrReauthorize) {
				t.Fatalf("set-up: %v, want ErrReauthorize", err)
			}
		}},
		{"refresh token rejected while confirming", func(_ *testing.T, h *harness, c *clock) {
			h.fake.RevokeTokens(testOrg)
			c.advance(9 * time.Hour)
			h.fake.Advance(9 * time.Hour)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{}
			h := newHarness(t, withClock(c))
			ctx := ctxT(t)
			h.signIn(h.browser)
			secret, _ := h.app.WebhookSecrets(ctx, testOrg)
			tt.state(t, h, c)
			if status := postAppWebhook(t, h, "application_uninstalled", testOrg, 104130623); status != "ignored" {
				t.Errorf("forged uninstall answered %q, want ignored", status)
			}
			if _, err := h.app.Status(testOrg); err != nil {
				t.Fatalf("forged uninstall removed the installation: %v", err)
			}
			if c := postWebhook(t, h.base+WebhookPath, testOrg, secret[0]); c != 200 {
				t.Errorf("the organization's webhooks answer %d after a forged uninstall, want 200", c)
			}
		})
	}
}

// LiveChat's own uninstall (tokens revoked, then the app webhook) is
// confirmed while the stored access token has not expired.
func TestUninstallConfirmed(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.signIn(h.browser)
	code, err := h.fake.Uninstall(ctx, testOrg)
	if err != nil || code != 200 {
		t.Fatalf("uninstall webhook: %d %v", code, err)
	}
	if _, err := h.app.Status(testOrg); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("installation kept after LiveChat's uninstall: %v", err)
	}
}
