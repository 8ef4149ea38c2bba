package dashboards

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/lcpipe/lcpipe/internal/testenv"
)

// TestThreadsViewMatches keeps the `threads` view and the panels' {threads}
// source (ThreadsSQL) one definition: the newest migration that (re)creates
// the view (0107 since chat ratings are attributed; applied migrations are
// never edited) must hold exactly ThreadsSQL's text. -update rewrites it
// there.
func TestThreadsViewMatches(t *testing.T) {
	dir := filepath.Join(testenv.RepoRoot(t), "schema", "migrations")
	files, err := filepath.Glob(filepath.Join(dir, "*.sql"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	const marker = "CREATE VIEW IF NOT EXISTS {{.DB}}.threads {{.OnCluster}} AS\n"
	var path, src string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), marker) {
			path, src = f, string(b)
		}
	}
	if path == "" {
		t.Fatal("no migration creates the threads view")
	}
	i := strings.Index(src, marker) + len(marker)
	j := strings.Index(src[i:], ";")
	if j < 0 {
		t.Fatalf("%s: the threads view has no ending ';'", path)
	}
	view := strings.TrimSpace(src[i : i+j])
	want := ThreadsSQL("{{.DB}}", "")
	if *update {
		if err := os.WriteFile(path, []byte(src[:i]+want+src[i+j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if view != want {
		t.Errorf("threads view in %s differs from ThreadsSQL (go test ./dashboards -run TestThreadsViewMatches -update):\n--- migration\n%s\n--- ThreadsSQL\n%s",
			filepath.Base(path), view, want)
	}
}
