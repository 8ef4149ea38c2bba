package lcapp

import (
	"sync"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/lcfake"
)

// Many goroutines in two processes' worth of Apps (ingest and the CLI share
// the store) hit an expired token at once: every call succeeds, and the
// rotating refresh token is never reused (a reuse would be invalid_grant and
// mark the installation as needing re-authorization).
func TestConcurrentRefresh(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.signIn(h.browser)
	second := h.newApp()
	h.fake.ExpireAccessTokens(testOrg)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		a := h.app
		if i%2 == 1 {
			a = second
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := a.Webhooks(ctx, testOrg)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st, _ := h.app.Status(testOrg)
	if st.NeedsReauth {
		t.Fatal("installation marked for re-authorization")
	}
	if n := h.fake.Calls("token:refresh_token"); n < 1 || n > 3 {
		t.Fatalf("%d refreshes for one expiry", n)
	}
}

func TestDirectoryRefreshesPeriodically(t *testing.T) {
	h := newHarness(t, func(_ *lcfake.Config, c *Config) { c.DirectoryRefresh = 50 * time.Millisecond })
	h.signIn(h.browser)
	h.fake.SetGroups(testOrg, []lcfake.Group{{ID: 3, Name: "Support"}})
	h.app.Start(ctxT(t))
	defer h.app.Close()
	deadline := time.Now().Add(5 * time.Second)
	for h.app.Directory().GroupName(testOrg, 3) != "Support" {
		if time.Now().After(deadline) {
			t.Fatal("the periodic refresh did not pick up the new group")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
