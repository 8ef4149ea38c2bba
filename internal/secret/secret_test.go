package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretDoesNotPrint(t *testing.T) {
	s := Secret("hunter2-very-secret")
	type holder struct {
		Password Secret
		List     []Secret
		Ptr      *Secret
		Map      map[string]Secret
	}
	h := holder{Password: s, List: []Secret{s}, Ptr: &s, Map: map[string]Secret{"k": s}}
	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s", "%T"} {
		fmt.Fprintf(&out, verb+"|", s)
		fmt.Fprintf(&out, verb+"|", h)
	}
	fmt.Fprint(&out, s, h)
	fmt.Fprintln(&out, s, h)
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(b)
	for _, hd := range []slog.Handler{slog.NewJSONHandler(&out, nil), slog.NewTextHandler(&out, nil)} {
		slog.New(hd).Info("x", "secret", s, "holder", h, "ptr", &h, slog.Group("g", "s", s))
	}
	for _, leak := range []string{"hunter2", fmt.Sprintf("%x", "hunter2")} {
		if strings.Contains(out.String(), leak) {
			t.Fatalf("secret printed:\n%s", out.String())
		}
	}
	if !strings.Contains(out.String(), "[redacted]") {
		t.Fatal("no [redacted] marker at all")
	}
	if s.Reveal() != "hunter2-very-secret" {
		t.Fatal("Reveal changed the value")
	}
}

// An empty secret shows as empty, so "not configured" stays visible.
func TestEmptySecret(t *testing.T) {
	var s Secret
	if got := fmt.Sprintf("%v|%s|%#v", s, s, s); got != `||""` {
		t.Fatalf("empty secret printed as %q", got)
	}
}
