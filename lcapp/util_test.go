package lcapp

import (
	"encoding/json"
	"fmt"
	"net/http"
)

func decodeJSON(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

func sprintf(f string, a ...any) string { return fmt.Sprintf(f, a...) }
