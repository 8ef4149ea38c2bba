package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/lcpipe/lcpipe/dashboards"
	"github.com/lcpipe/lcpipe/ingest"
	"github.com/lcpipe/lcpipe/ingest/spool"
	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/secret"
	"github.com/lcpipe/lcpipe/lcapp"
	"github.com/lcpipe/lcpipe/processor"
)

// everyConfig is every configuration struct a command builds (and might
// log). A new component's config belongs here.
func everyConfig() map[string]any {
	return map[string]any{
		"ingest":     ingest.DefaultConfig(),
		"spool":      spool.DefaultConfig("/tmp/spool"),
		"kafka":      kafka.DefaultConfig(),
		"clickhouse": chconn.DefaultConfig(),
		"processor":  processor.DefaultConfig(),
		"lcapp":      lcapp.DefaultConfig(),
		"viewer":     dashboards.DefaultViewerConfig(),
		"settler":    dashboards.DefaultSettlerConfig(),
	}
}

// secretName is how a credential field is named; such a field must have a
// type that does not print.
var secretName = regexp.MustCompile(`(?i)(password|passwd|secret|token|credential|privatekey|encryptionkey|apikey)`)

// fillSecrets sets every secret-typed field reachable from v (nested
// structs, slices of secrets) to a fresh marker, and reports string fields
// named like a credential that are not secret-typed.
func fillSecrets(t *testing.T, v reflect.Value, path string, markers *[]string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue // unexported fields are not set from configuration
			}
			fillSecrets(t, v.Field(i), path+"."+f.Name, markers)
		}
	case reflect.Slice:
		if isSecretType(v.Type().Elem()) {
			s := reflect.MakeSlice(v.Type(), 2, 2)
			for i := 0; i < 2; i++ {
				m := fmt.Sprintf("marker-%d-%s", len(*markers), "s3cr3t")
				*markers = append(*markers, m)
				s.Index(i).SetString(m)
			}
			v.Set(s)
		}
	case reflect.String:
		if isSecretType(v.Type()) {
			m := fmt.Sprintf("marker-%d-%s", len(*markers), "s3cr3t")
			*markers = append(*markers, m)
			v.SetString(m)
			return
		}
		last := path[strings.LastIndexByte(path, '.')+1:]
		if secretName.MatchString(last) {
			t.Errorf("%s is a plain string named like a credential: use secret.Secret", path)
		}
	}
}

// isSecretType reports the project's one secret type; another type named
// Secret (a second, possibly leaky implementation) fails the test.
func isSecretType(t reflect.Type) bool {
	if t == reflect.TypeFor[secret.Secret]() {
		return true
	}
	if t.Name() == "Secret" {
		panic(t.PkgPath() + ".Secret: use internal/secret, the project's one secret type")
	}
	return false
}

// TestNoConfigPrintsASecret logs every configuration struct, with every
// secret field set, through slog's JSON and text handlers (whole and field
// by field), fmt's verbs, and finds none of the values.
func TestNoConfigPrintsASecret(t *testing.T) {
	for name, cfg := range everyConfig() {
		t.Run(name, func(t *testing.T) {
			v := reflect.New(reflect.TypeOf(cfg)).Elem()
			v.Set(reflect.ValueOf(cfg))
			var markers []string
			fillSecrets(t, v, name, &markers)
			filled := v.Interface()
			var out bytes.Buffer
			for _, h := range []slog.Handler{slog.NewJSONHandler(&out, nil), slog.NewTextHandler(&out, nil)} {
				log := slog.New(h)
				log.Info("config", "config", filled)
				log.Info("config", slog.Any("config", v.Addr().Interface()))
				// Field by field too: a secret logged as an attribute of its own.
				for i := 0; i < v.NumField(); i++ {
					if v.Type().Field(i).IsExported() {
						log.Info("field", v.Type().Field(i).Name, v.Field(i).Interface())
					}
				}
			}
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
				fmt.Fprintf(&out, verb+"\n", filled)
			}
			for _, m := range markers {
				if strings.Contains(out.String(), m) || strings.Contains(out.String(), fmt.Sprintf("%x", m)) {
					t.Errorf("a secret of the %s config was printed:\n%s", name, out.String())
					break
				}
			}
		})
	}
	// The configs above do hold secrets (the check is not vacuous).
	var n int
	for name, cfg := range everyConfig() {
		v := reflect.New(reflect.TypeOf(cfg)).Elem()
		v.Set(reflect.ValueOf(cfg))
		var markers []string
		fillSecrets(t, v, name, &markers)
		n += len(markers)
	}
	if n < 4 {
		t.Fatalf("only %d secret fields found in the configs", n)
	}
}
