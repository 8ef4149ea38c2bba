package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/lcpipe/lcpipe/internal/testenv"
)

// On the local 18.16 server `lcpipe analysts add` fails and says why and
// what works instead; missing arguments are named.
func TestAnalystsCommand(t *testing.T) {
	cfg := testenv.ClickHouseConfig(t)
	t.Setenv("CLICKHOUSE_ADDR", strings.Join(cfg.Addr, ","))
	t.Setenv("CLICKHOUSE_DATABASE", cfg.Database)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"analysts", "add"}, "--organization is required"},
		{[]string{"analysts", "grant", "--organization", "o"}, "unknown or missing action"},
		{[]string{"analysts", "add", "--organization", "390e44e6-f1e6-0368c-z6ddb-74g14508c2ex"}, "20.4"},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != 1 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("lcpipe %v: exit %d, stderr %s, want it to mention %q", tc.args, code, errb.String(), tc.want)
		}
	}
}
