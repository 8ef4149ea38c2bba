package lcfake

import (
	"slices"
	"testing"
	"time"
)

// Zero fields take the documented defaults; set ones are kept.
func TestWithDefaults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in, want Config
	}{
		{"zero", Config{}, Config{Scopes: DefaultScopes, AccessTokenTTL: 8 * time.Hour, CodeTTL: 5 * time.Minute, Region: "dal"}},
		{"set", Config{Scopes: []string{"chats--my:ro"}, AccessTokenTTL: time.Minute, CodeTTL: time.Second, Region: "fra"},
			Config{Scopes: []string{"chats--my:ro"}, AccessTokenTTL: time.Minute, CodeTTL: time.Second, Region: "fra"}},
	} {
		got := tc.in.withDefaults()
		if !slices.Equal(got.Scopes, tc.want.Scopes) || got.AccessTokenTTL != tc.want.AccessTokenTTL || got.CodeTTL != tc.want.CodeTTL || got.Region != tc.want.Region {
			t.Errorf("%s: withDefaults() = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
