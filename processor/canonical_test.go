package processor

import (
	"os"
	"path/filepath"
	"testing"
)

// canonicalCases are inputs the fast path must either copy exactly as the
// slow path encodes them or leave to it.
var canonicalCases = []string{
	`{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `1.5e+10`, `1E-7`, `12345678901234567890`, `"x"`,
	` { "b": [ {"z":1,"a":2} ], "a": 12345678901234567890, "c": "x y" } `,
	`{"a ":1,"a":2,"a!":3,"a\"":4}`,
	`{"b":1,"a":2,"b":3}`,
	`{"é":"ü","e":"z","😀":[1,{"y":null,"x":true}]}`,
	`{"html":"<a href=\"x\">&</a>"}`,
	`{"sep":"a` + "\u2028" + `b"}`,
	`{"esc":"line\nnext \u00e9 \/"}`,
	`{"bad":"` + "\xff" + `"}`,
	`{"a":1} {"b":2}`,
	`{"a":1,}`, `[1,]`, `{"a" 1}`, `01`, `1.`, `-`, `.5`, `1e`, `tru`, `{"a":[1 2]}`, ``, `   `,
	`{"n":[1,2,3,{"k":[{"z":{"y":{"x":[]}}}]}],"m":{"b":{},"a":[]}}`,
}

// TestCanonicalFastMatchesSlow: where the fast path answers, it answers
// what the generic decode and encode does, over the cases and every
// fixture's payload.
func TestCanonicalFastMatchesSlow(t *testing.T) {
	inputs := append([]string(nil), canonicalCases...)
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("fixtures: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, string(b))
	}
	fast := 0
	for _, in := range inputs {
		got, ok := appendCanonical(nil, []byte(in))
		if !ok {
			continue
		}
		fast++
		if want := canonicalSlow([]byte(in)); string(got) != string(want) {
			t.Errorf("%.80q:\nfast %s\nslow %s", in, got, want)
		}
	}
	// The fixtures are what LiveChat sends: they must take the fast path.
	if fast < len(files) {
		t.Errorf("only %d of %d inputs took the fast path (the %d fixtures should)", fast, len(inputs), len(files))
	}
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, c := range canonicalCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, ok := appendCanonical(nil, in)
		if !ok {
			return
		}
		if want := canonicalSlow(in); string(got) != string(want) {
			t.Errorf("%q:\nfast %s\nslow %s", in, got, want)
		}
	})
}
