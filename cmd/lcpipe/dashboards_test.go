package main

import (
	"bytes"
	"strings"
	"testing"
)

// The dashboards show chat data: without a sign-in method they refuse to
// start, and say what to set.
func TestDashboardsRefuseWithoutSignIn(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"nothing", nil, "DASHBOARDS_TOKEN"},
		{"short token", map[string]string{"DASHBOARDS_TOKEN": "abc"}, "at least 16 characters"},
		{"app without public url", map[string]string{"LIVECHAT_CLIENT_ID": "id", "LIVECHAT_CLIENT_SECRET": "s"}, "no sign-in configured"},
		{"public url with a path", map[string]string{"LIVECHAT_CLIENT_ID": "id", "LIVECHAT_CLIENT_SECRET": "s", "DASHBOARDS_PUBLIC_URL": "https://d.example.com/x"}, "without path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"DASHBOARDS_TOKEN", "LIVECHAT_CLIENT_ID", "LIVECHAT_CLIENT_SECRET", "DASHBOARDS_PUBLIC_URL"} {
				t.Setenv(k, tc.env[k])
			}
			var out, errb bytes.Buffer
			if code := run([]string{"dashboards"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant it to mention %q", code, errb.String(), tc.want)
			}
		})
	}
}
