package lcapp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
)

func decodeJSON(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sprintf(f string, a ...any) string { return fmt.Sprintf(f, a...) }
