// Package secret is the one type the project uses for credentials in
// configuration and in memory: passwords, tokens, client secrets, webhook
// secrets and encryption keys.
//
// Why a type of its own: configurations get logged (slog, JSON or text),
// printed in errors and dumped with %+v while debugging. A Secret shows
// "[redacted]" (or "" when unset, so "not configured" stays visible) through
// every fmt verb, log/slog (LogValue, and JSON for a Secret inside a logged
// struct) and encoding/json. Reveal hands the value to the one place that
// sends it.
//
// What it cannot protect: a Secret converted to a plain string, and
// unexported struct fields (fmt prints those without calling any method).
package secret

import (
	"encoding/json"
	"fmt"
	"log/slog"
)

// Secret is a credential that does not print.
type Secret string

const redacted = "[redacted]"

// String hides the value ("" when the secret is empty).
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString hides the value from %#v.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// Format hides the value from every fmt verb: without it, a verb that does
// not apply to strings (%d) would print the raw value in its error form.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	if verb == 'q' {
		_, _ = fmt.Fprintf(f, "%q", s.String())
		return
	}
	_, _ = f.Write([]byte(s.String()))
}

// LogValue hides the value from log/slog (it implements slog.LogValuer).
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON hides the value from encoding/json, which slog's JSON handler
// uses for a struct holding a Secret.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// Reveal returns the value, for the one place that sends it.
func (s Secret) Reveal() string { return string(s) }

// Compile-time checks of the interfaces that keep it hidden.
var (
	_ slog.LogValuer = Secret("")
	_ fmt.Formatter  = Secret("")
	_ fmt.GoStringer = Secret("")
	_ json.Marshaler = Secret("")
)
