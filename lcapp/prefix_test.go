package lcapp

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/lcpipe/lcpipe/internal/lcfake"
)

// PUBLIC_BASE_URL with a path (a reverse proxy publishing ingest under
// /lcpipe and stripping it): the whole sign-in works through the proxy, so
// the session cookie's path includes the prefix (a cookie at /livechat/app
// is never sent back by a browser at /lcpipe/livechat/app/callback).
func TestPathPrefixInPublicBaseURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	public := "http://" + ln.Addr().String() + "/lcpipe"
	h := newHarness(t, func(f *lcfake.Config, c *Config) {
		c.PublicBaseURL = public
		f.RedirectURIs = []string{public + SettingsPath}
	})
	target, _ := url.Parse(h.base)
	proxy := &http.Server{Handler: http.StripPrefix("/lcpipe", httputil.NewSingleHostReverseProxy(target))}
	go func() { _ = proxy.Serve(ln) }()
	t.Cleanup(func() { proxy.Close() })

	resp, body := h.get(h.browser, public+SettingsPath)
	if resp.StatusCode != 200 || !strings.Contains(body, `href="/lcpipe/livechat/app/signin"`) {
		t.Fatalf("settings page through the proxy: %d\n%s", resp.StatusCode, body)
	}
	resp, body = h.get(h.browser, public+SignInPath)
	if resp.StatusCode != 200 || resp.Request.URL.String() != public+SettingsPath || !strings.Contains(body, `id="confirmation"`) {
		t.Fatalf("sign-in through the proxy ended with %d at %s:\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	u, _ := url.Parse(public + SettingsPath)
	for _, c := range h.browser.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			return
		}
	}
	t.Fatal("no session cookie for the prefixed settings path")
}
